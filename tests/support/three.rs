//! The fixture of the draining tests: wharf on the host and three demo
//! backends in one pool, on a network of their own, every one of them
//! answering through wharf before the test starts.
//!
//! The network keeps other tests' containers out of this wharf's pools (it
//! runs with `--network`). The pool has no `wharf.host`: any Host header
//! reaches it ([`Three::HOST`] is the one the loads send).
//!
//! ```ignore
//! let t = Three::start("kget", &[]).await;
//! let load = t.load(LoadOpts::default(), "load reaches all three").await;
//! t.backends[0].kill("KILL");
//! t.wait_gone(t.addrs[0], "killed backend leaves the pool").await;
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::demo::demo;
use super::docker::{Container, Network};
use super::http::{poll, Client};
use super::load::{Load, LoadOpts};
use super::secs;
use super::state::{backend_at, wait_pool, wait_state_at};
use super::wharf::Wharf;

/// wharf on the host and three demo backends in one pool on a network of
/// their own. Fields drop in order: wharf, the backends, then the network.
pub struct Three {
    pub wharf: Wharf,
    pub backends: Vec<Container>,
    _net: Network,
    /// Address and hostname of each backend, taken while they run.
    pub addrs: Vec<SocketAddr>,
    pub hosts: Vec<String>,
    pub pool: String,
}

impl Three {
    /// The Host header of the fixture's own requests.
    pub const HOST: &'static str = "three.test";

    /// Network `tag`, wharf, and three demos `<tag>0..2` with the extra
    /// `docker run` options `extra` (e.g. `["-e", "DEMO_DRAIN_DELAY=300ms"]`);
    /// returns once all three are ready in wharf and have answered through it.
    pub async fn start(tag: &str, extra: &[&str]) -> Three {
        let net = Network::create(tag);
        let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
        let pool = format!("three-{tag}");
        let label = format!("wharf.pool={pool}");
        let backends: Vec<Container> = (0..3)
            .map(|i| demo(&net, &format!("{tag}{i}"), &[&label], extra))
            .collect();
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr(&net.name, 80)).collect();
        let hosts: Vec<String> = backends.iter().map(Container::hostname).collect();
        wait_pool(wharf.admin, &pool, &addrs, secs(60), "three backends ready").await;
        wait_all_answer(wharf.listen, Three::HOST, &hosts).await;
        Three {
            _net: net,
            wharf,
            backends,
            addrs,
            hosts,
            pool,
        }
    }

    /// wharf's `wharf_retries_total`.
    pub async fn retries(&self) -> u64 {
        self.wharf.metric("wharf_retries_total").await
    }

    /// Starts a load on wharf and waits until every backend has answered it.
    pub async fn load(&self, opts: LoadOpts, what: &str) -> Load {
        let load = Load::start(self.wharf.listen, Three::HOST, opts);
        load.wait_answered_by(&self.hosts, what).await;
        load
    }

    /// Polls `/api/state` until `check` accepts the backend at `addr`
    /// (`None` once it has left the pool).
    pub async fn wait_backend<T>(
        &self,
        addr: SocketAddr,
        deadline: Duration,
        what: &str,
        check: impl Fn(Option<Value>) -> Result<T, String>,
    ) -> (T, Duration) {
        wait_state_at(self.wharf.admin, deadline, what, |s| {
            check(backend_at(s, &self.pool, addr))
        })
        .await
    }

    /// Waits until the backend at `addr` has left the pool.
    pub async fn wait_gone(&self, addr: SocketAddr, what: &str) -> Duration {
        let gone = |b: Option<Value>| b.map_or(Ok(()), |b| Err(format!("still listed: {b}")));
        self.wait_backend(addr, secs(30), what, gone).await.1
    }

    /// wharf's SIGTERM→drained lag (µs) for container `id`, from its log.
    pub fn drain_lag_us(&self, id: &str) -> u64 {
        self.wharf.drain_lag_us(id)
    }
}

/// Waits (30 s at most) until every one of `hostnames` (the demos'
/// `x-demo-hostname`) has answered a GET with `Host: host` through `listen`.
pub async fn wait_all_answer(listen: SocketAddr, host: &str, hostnames: &[String]) {
    let want: BTreeSet<String> = hostnames.iter().cloned().collect();
    let client = Client::new();
    let seen = Mutex::new(BTreeSet::new());
    poll("every backend answers through wharf", secs(30), || async {
        let r = client.get(listen, host, "/warm-up").await?;
        if r.status != 200 {
            return Err(format!("{} {}", r.status, r.body));
        }
        let mut seen = seen.lock().unwrap();
        seen.insert(r.header("x-demo-hostname").unwrap_or("?").to_string());
        if seen.is_superset(&want) {
            Ok(())
        } else {
            Err(format!("seen {seen:?}, want {want:?}"))
        }
    })
    .await;
}
