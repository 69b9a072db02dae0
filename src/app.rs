//! Start-up and shutdown: the wiring of the crate.
//!
//! As in mini-redis, the caller binds the sockets and owns the shutdown
//! signal: [`run`] takes already-bound [`Listeners`], a started
//! [`Provider`] and a shutdown future, so tests start wharf in-process on
//! `127.0.0.1:0` with any provider. [`start`] is what the binary does: bind,
//! connect to the provider, run until SIGTERM/SIGINT.
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
use crate::config::{Config, Provider as ProviderKind};
use crate::provider::docker::{DockerError, DockerProvider, Settings};
use crate::provider::statics::NoProvider;
use crate::provider::{Discovery, Provider, Publisher};
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

/// The sockets wharf serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// `--listen`: the proxy (HTTP/1.1 and h2c).
    pub public: TcpListener,
    /// `--admin-listen`: status API, metrics, dashboard.
    pub admin: TcpListener,
}

impl Listeners {
    /// Bind the addresses of `cfg`.
    pub async fn bind(cfg: &Config) -> Result<Listeners, StartError> {
        Ok(Listeners {
            public: bind(cfg.listen, "proxy", "--listen").await?,
            admin: bind(cfg.admin_listen, "admin", "--admin-listen").await?,
        })
    }
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

/// The provider `--provider` names, connected: an unreachable Docker daemon
/// fails here, at start.
pub async fn provider(cfg: &Config) -> Result<Box<dyn Provider>, StartError> {
    Ok(match cfg.provider {
        ProviderKind::None => Box::new(NoProvider),
        ProviderKind::Docker => Box::new(DockerProvider::connect(settings(cfg)).await?),
    })
}

/// What the binary does: bind, connect, [`run`] until `shutdown`.
pub async fn start(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let listeners = Listeners::bind(&cfg).await?;
    let provider = provider(&cfg).await?;
    run(cfg, listeners, provider, shutdown).await;
    Ok(())
}

/// Serve until `shutdown` resolves, then drain and return.
pub async fn run(cfg: Config, listeners: Listeners, provider: Box<dyn Provider>, shutdown: impl Future<Output = ()>) {
    let router = Arc::new(Router::default());
    let discovery = Arc::new(Discovery::default());
    let publisher = Publisher::new(Arc::clone(&router), cfg.static_pools.clone(), Arc::clone(&discovery));
    let provider_task = tokio::spawn(provider.run(publisher));

    let proxy = Arc::new(Proxy::new(
        Arc::clone(&router),
        cfg.timeouts,
        cfg.access_log,
        cfg.trusted_proxies.clone(),
    ));
    let maintain = tokio::spawn(Arc::clone(&proxy).maintain());
    let admin = Arc::new(Admin {
        proxy: Arc::clone(&proxy),
        discovery,
        shutting_down: AtomicBool::new(false),
    });
    let public_addr = listeners.public.local_addr().ok();
    let admin_addr = listeners.admin.local_addr().ok();
    info!(listen = ?public_addr, admin = ?admin_addr, "wharf {} serving", env!("CARGO_PKG_VERSION"));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = {
        let mut rx = stop_rx.clone();
        let admin = Arc::clone(&admin);
        tokio::spawn(admin::serve(listeners.admin, admin, async move {
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
    server::serve(listeners.public, proxy, cfg.timeouts, server_shutdown).await;
    let _ = stop_tx.send(true);
    provider_task.abort();
    maintain.abort();
    let _ = admin_task.await;
    info!("bye");
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
