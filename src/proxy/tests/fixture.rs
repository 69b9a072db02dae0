//! wharf in-process: a [`Router`] the test publishes desired states into, a
//! [`Proxy`] over it, and [`server::serve`] on a `127.0.0.1:0` listener,
//! stopped by the test (or when the test's runtime ends).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::BackendShared;
use crate::cidr::Cidr;
use crate::config::Timeouts;
use crate::model::{BackendStatus, Desired, DesiredBackend, DesiredPool, PoolOptions};
use crate::proxy::Proxy;
use crate::routing::{Pool, Router};
use crate::server;

/// Timeouts for tests: generous, except where a test shortens one.
pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(30),
        client_idle: Duration::from_secs(30),
        // Longer than any test: only the tests about it see a connection age out.
        upstream_idle: Duration::from_secs(60),
        drain: Duration::from_secs(5),
        body_idle: Duration::from_secs(30),
        tunnel_idle: Duration::from_secs(600),
    }
}

/// Ready backends of pool `name` at `addrs`, in order (round robin starts
/// at the first). A backend's id is the pool and its port, so the same
/// address keeps its identity (and shared state) when the pool changes.
pub fn pool(name: &str, opts: PoolOptions, addrs: &[SocketAddr]) -> (String, DesiredPool) {
    let backends = addrs
        .iter()
        .map(|&addr| DesiredBackend {
            id: format!("{name}-{}", addr.port()),
            container: format!("{name}-{}", addr.port()),
            addr,
            weight: 1,
            status: BackendStatus::Ready,
        })
        .collect();
    (name.to_string(), DesiredPool { opts, backends })
}

/// Options with a path prefix (and default everything else).
pub fn at_path(path: &str) -> PoolOptions {
    PoolOptions {
        path: Some(path.to_string()),
        ..PoolOptions::default()
    }
}

pub fn desired(pools: impl IntoIterator<Item = (String, DesiredPool)>) -> Desired {
    Desired {
        pools: pools.into_iter().collect(),
        ..Desired::default()
    }
}

pub struct Wharf {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<()>>,
}

impl Wharf {
    pub async fn start() -> Wharf {
        Wharf::with(timeouts(), Vec::new()).await
    }

    pub async fn with_timeouts(t: Timeouts) -> Wharf {
        Wharf::with(t, Vec::new()).await
    }

    pub async fn with(timeouts: Timeouts, trusted_proxies: Vec<Cidr>) -> Wharf {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind wharf");
        let addr = listener.local_addr().expect("wharf address");
        let router = Arc::new(Router::default());
        let proxy = Arc::new(Proxy::new(router, timeouts, false, trusted_proxies));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server::serve(listener, Arc::clone(&proxy), timeouts, async move {
            let _ = stopped.await;
        }));
        Wharf {
            addr,
            proxy,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Route `d` from now on (the table is swapped).
    pub fn publish(&self, d: Desired) {
        assert!(
            self.proxy.router.update(d),
            "the desired state did not change the table"
        );
    }

    /// Route one pool, `web` on any host and path, to `addrs`.
    pub fn serve(&self, opts: PoolOptions, addrs: &[SocketAddr]) {
        self.publish(desired([pool("web", opts, addrs)]));
    }

    /// The current table's pool `name`.
    pub fn pool(&self, name: &str) -> Arc<Pool> {
        let table = self.proxy.router.load();
        let pool = table.pools.iter().find(|p| p.name == name).expect("no such pool");
        Arc::clone(pool)
    }

    /// The shared state of the backend of pool `pool` at `addr`.
    pub fn shared(&self, pool: &str, addr: SocketAddr) -> Arc<BackendShared> {
        let p = self.pool(pool);
        let b = p.backends.iter().find(|b| b.addr == addr).expect("no such backend");
        Arc::clone(&b.shared)
    }

    /// Idle upstream connections kept for this backend.
    pub fn idle(&self, shared: &BackendShared) -> usize {
        self.proxy.upstreams.idle(shared.uid)
    }

    /// Of those, the ones of wharf's own client ([`crate::proxy::raw`]).
    pub fn idle_raw(&self, shared: &BackendShared) -> usize {
        self.proxy.upstreams.idle_raw(shared.uid)
    }

    /// Wait until no request of any backend in the table is in flight.
    pub async fn settled(&self) {
        let table = self.proxy.router.load();
        let backends: Vec<_> = table.pools.iter().flat_map(|p| p.backends.clone()).collect();
        super::client::eventually("every in-flight slot released", || {
            backends.iter().all(|b| b.shared.in_flight.load(Ordering::SeqCst) == 0)
        })
        .await;
    }

    /// Signal shutdown; returns the task serving until it has drained.
    pub fn shut_down(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.take().expect("already shut down")
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Some(s) = &self.served {
            s.abort();
        }
    }
}

/// Aborts a background task (e.g. [`Proxy::maintain`]) when the test ends.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start [`Proxy::maintain`] for `wharf` until the returned guard drops.
pub fn maintain(wharf: &Wharf) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(Arc::clone(&wharf.proxy).maintain()))
}
