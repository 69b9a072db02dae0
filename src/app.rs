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
use crate::listen;
use crate::provider::docker::{DockerError, DockerProvider, Settings};
use crate::provider::statics::NoProvider;
use crate::provider::swarm::{SwarmError, SwarmProvider};
use crate::provider::{Discovery, Provider, Publisher};
use crate::proxy::Proxy;
use crate::routing::Router;
use crate::server;
use crate::tls::files::DirWatch;
use crate::tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}; {}", crate::listen::bind_hint(.source, *.addr, .flag))]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error("cannot read --tls-dir {dir}: {source}")]
    TlsDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    AcmeStorage(crate::tls::acme::storage::StorageError),
    #[error("cannot start worker thread {index}: {source}")]
    Worker {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// The sockets wharf serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// `--listen`: the proxy (HTTP/1.1 and h2c), one non-blocking socket
    /// per worker (see [`crate::listen`]); wharf runs one worker per socket.
    pub public: Vec<std::net::TcpListener>,
    /// `--admin-listen`: status API, metrics, dashboard.
    pub admin: TcpListener,
    /// `--tls-listen`: one socket per worker like `public`, or none (TLS off).
    pub tls: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Bind the addresses of `cfg`, the public one once per worker.
    pub async fn bind(cfg: &Config) -> Result<Listeners, StartError> {
        let public = listen::reuseport(cfg.listen, cfg.workers.max(1), cfg.defer_accept_secs).map_err(|source| {
            StartError::Bind {
                addr: cfg.listen,
                what: "proxy",
                flag: "--listen",
                source,
            }
        })?;
        let tls = match cfg.tls_listen {
            Some(addr) => listen::reuseport(addr, cfg.workers.max(1), cfg.defer_accept_secs).map_err(|source| {
                StartError::Bind {
                    addr,
                    what: "TLS",
                    flag: "--tls-listen",
                    source,
                }
            })?,
            None => Vec::new(),
        };
        Ok(Listeners {
            public,
            admin: bind(cfg.admin_listen, "admin", "--admin-listen").await?,
            tls,
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
        ProviderKind::Swarm => Box::new(SwarmProvider::connect(settings(cfg)).await?),
    })
}

/// What the binary does: bind, connect, [`run`] until `shutdown`.
pub async fn start(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let listeners = Listeners::bind(&cfg).await?;
    let provider = provider(&cfg).await?;
    run(cfg, listeners, provider, shutdown).await
}

/// Serve until `shutdown` resolves, then drain and return.
///
/// The control plane — the provider, the admin listener, the health probes —
/// runs on the caller's runtime. Requests are served by one worker thread per
/// public socket, each with its own current-thread runtime, its own
/// [`Proxy`] and upstream connections: a request never leaves the thread that
/// accepted its connection, and workers share no lock on the request path
/// (only the routing table's `ArcSwap` and the backends' atomic counters).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    provider: Box<dyn Provider>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let router = Arc::new(Router::default());
    let discovery = Arc::new(Discovery::default());
    let publisher = Publisher::new(Arc::clone(&router), cfg.static_pools.clone(), Arc::clone(&discovery));
    let provider_task = tokio::spawn(provider.run(publisher));

    // HTTPS: the certificate store and the challenge answers, shared by the
    // workers, the certificate sources and the admin API.
    let tls = Tls::new();
    let mut cert_tasks = Vec::new();
    if let Some(dir) = &cfg.tls_dir {
        // The first scan before serving: a started wharf serves its files at once.
        let mut watch = DirWatch::new(dir);
        let scan = watch
            .scan_and_publish(&tls.store)
            .map_err(|source| StartError::TlsDir {
                dir: dir.display().to_string(),
                source,
            })?;
        info!(dir = %dir.display(), certificates = watch.certificates().len(), broken = scan.errors.len(),
              poll_s = crate::tls::files::POLL_INTERVAL.as_secs(), "--tls-dir loaded");
        cert_tasks.push(tokio::spawn(crate::tls::files::poll(
            watch,
            Arc::clone(&tls.store),
            crate::tls::files::POLL_INTERVAL,
        )));
    }
    // ACME: an ACME manager starts here with `Arc::clone(&tls.store)` (it
    // publishes `CertSource::Acme` and sets TLS-ALPN-01 certificates),
    // `Arc::clone(&tls.http01)` (HTTP-01 answers) and `Arc::clone(&router)`
    // (`router.load().acme_hosts()`, woken by `router.subscribe()`); push its
    // task onto `cert_tasks` so shutdown aborts it.
    let acme_status = match &cfg.acme {
        Some(settings) => {
            let storage =
                crate::tls::acme::storage::Storage::open(&settings.storage).map_err(StartError::AcmeStorage)?;
            let status = Arc::new(crate::tls::acme::AcmeStatus::default());
            let manager = Arc::new(crate::tls::acme::Manager {
                settings: settings.clone(),
                storage,
                store: Arc::clone(&tls.store),
                http01: Arc::clone(&tls.http01),
                status: Arc::clone(&status),
            });
            info!(directory = settings.directory, storage = %settings.storage.display(),
                  challenge = settings.challenge.as_str(), "ACME on");
            let hosts_router = Arc::clone(&router);
            cert_tasks.push(tokio::spawn(
                manager.run(move || hosts_router.load().acme_hosts(), router.subscribe()),
            ));
            Some(status)
        }
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let public_addr = listeners.public.first().and_then(|l| l.local_addr().ok());
    // As the kernel rounded `--defer-accept` (1, 3, 7… s), 0 if refused.
    let listeners_deferral = listeners.public.first().map_or(0, listen::deferral_secs);
    let tls_addr = listeners.tls.first().and_then(|l| l.local_addr().ok());
    if tls_addr.is_some() && tls.store.served().is_empty() {
        tracing::warn!("TLS listener on but no certificate loaded yet: handshakes fail until one is (--tls-dir, or ACME obtains one)");
    }
    let mut tls_sockets = listeners.tls.into_iter();
    let mut proxies = Vec::new();
    let mut workers = Vec::new();
    // Here, after binding and connecting: a start-up error stays one line.
    match crate::limits::raise_nofile() {
        Ok((before, after)) if after > before => info!(before, after, "raised the file descriptor limit"),
        Ok((n, _)) => info!(limit = n, "file descriptor limit (already at its maximum)"),
        Err((n, e)) => tracing::warn!(limit = n, error = %e, "cannot raise the file descriptor limit"),
    }
    let max_connections = match cfg.max_connections {
        0 => {
            let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            crate::limits::auto_max_connections(nofile.unwrap_or(u64::MAX))
        }
        n => n,
    };
    info!(max_connections, "client connections capped (--max-connections)");
    let conn_limit = Arc::new(crate::limits::ConnLimit::new(max_connections));
    for (index, socket) in listeners.public.into_iter().enumerate() {
        let mut proxy = Proxy::new(
            Arc::clone(&router),
            cfg.timeouts,
            cfg.access_log,
            cfg.trusted_proxies.clone(),
        );
        proxy.http01 = Some(Arc::clone(&tls.http01));
        proxy.https_port = tls_addr.map_or(443, |a| a.port());
        proxy.conn_limit = Arc::clone(&conn_limit);
        proxy.worker = index;
        let proxy = Arc::new(proxy);
        proxies.push(Arc::clone(&proxy));
        let stop = stop_rx.clone();
        let tls_side = tls_sockets.next().map(|socket| TlsSide {
            socket,
            config: Arc::clone(&tls.server_config),
            handshake_timeout: cfg.tls_handshake_timeout,
        });
        let w = worker(index, socket, tls_side, proxy, cfg.timeouts, stop)
            .map_err(|source| StartError::Worker { index, source })?;
        workers.push(w);
    }
    let admin = Arc::new(Admin {
        proxies,
        router,
        discovery,
        shutting_down: AtomicBool::new(false),
        tls: Some(tls.clone()),
        acme: acme_status,
        access: cfg.admin_access.clone(),
    });
    let admin_addr = listeners.admin.local_addr().ok();
    info!(listen = ?public_addr, tls_listen = ?tls_addr, admin = ?admin_addr, workers = workers.len(),
        defer_accept_s = listeners_deferral, "wharf {} serving", env!("CARGO_PKG_VERSION"));

    let admin_stop = Arc::new(tokio::sync::Notify::new());
    let admin_task = {
        let admin = Arc::clone(&admin);
        let stop = Arc::clone(&admin_stop);
        tokio::spawn(admin::serve(
            listeners.admin,
            admin,
            async move { stop.notified().await },
        ))
    };
    shutdown.await;
    info!("shutdown signal: readiness off, no new connections");
    admin.shutting_down.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    admin_stop.notify_one();
    provider_task.abort();
    for t in cert_tasks {
        t.abort();
    }
    let _ = admin_task.await;
    info!("bye");
    Ok(())
}

/// A worker's TLS listener and what it needs.
struct TlsSide {
    socket: std::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: std::time::Duration,
}

/// Start worker `index`: a thread with its own current-thread runtime that
/// serves `socket` (and its TLS socket, if any) through `proxy` until `stop`
/// turns true, then drains. The returned receiver resolves when the worker is done.
fn worker(
    index: usize,
    socket: std::net::TcpListener,
    tls: Option<TlsSide>,
    proxy: Arc<Proxy>,
    timeouts: crate::config::Timeouts,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name(format!("wharf-worker-{index}"))
        .spawn(move || {
            // Freed blocks are kept for this worker's next requests (the
            // wharf-alloc crate), and given back when it ends (below).
            wharf_alloc::cache_this_thread();
            rt.block_on(async move {
                let listener = match TcpListener::from_std(socket) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "cannot use the listening socket");
                        return;
                    }
                };
                let maintain = tokio::spawn(Arc::clone(&proxy).maintain());
                // The accept loops poll their stop future at every wake-up,
                // once per connection: a `watch` receiver costs about 90
                // instructions there (its lock, its `Notified`), a `Stop`
                // one atomic load (issue 9). One task turns the first into
                // the second.
                let worker_stop = Arc::new(server::stop::Stop::default());
                let forward = {
                    let worker_stop = Arc::clone(&worker_stop);
                    tokio::spawn(async move {
                        let _ = stop.wait_for(|v| *v).await;
                        worker_stop.trigger();
                    })
                };
                let tls_stop = Arc::clone(&worker_stop);
                let stopped = async move {
                    worker_stop.stopped().await;
                };
                let tls_serving = async {
                    let Some(t) = tls else { return };
                    let listener = match TcpListener::from_std(t.socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(worker = index, error = %e, "cannot use the TLS listening socket");
                            return;
                        }
                    };
                    let stopped = async move {
                        tls_stop.stopped().await;
                    };
                    let proxy = Arc::clone(&proxy);
                    server::tls::serve(listener, proxy, t.config, timeouts, t.handshake_timeout, stopped).await;
                };
                tokio::join!(
                    server::serve(listener, Arc::clone(&proxy), timeouts, stopped),
                    tls_serving
                );
                maintain.abort();
                forward.abort();
            });
            let _ = done_tx.send(());
            // The runtime's own memory is freed on this thread: first that,
            // then the cache goes back to `free`.
            drop(rt);
            wharf_alloc::release_this_thread();
        })?;
    Ok(done_rx)
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
