//! Reading wharf's admin listener: the `/api/state` document and `/metrics`.
//!
//! Small functions over the `/api/state` JSON (pools, their backends, the
//! skipped containers), the waits built on them, and the [`Wharf`] methods
//! that fetch them. The free functions take an admin address, so they serve
//! a wharf in a container (published port) as well as one on the host.
//!
//! ```ignore
//! let s = state_at(wharf.admin).await?;
//! assert_eq!(pool_view(&s, "web"), [(addr.to_string(), "ready".to_string())]);
//! let (reason, took) = wharf.wait_backend_state("web", &b.name, "unhealthy", secs(5)).await;
//! wait_state_at(wharf.admin, secs(10), "b gone", |s| match backend_named(s, "web", &b.name) {
//!     None => Ok(()),
//!     Some(b) => Err(format!("b is {}", b["state"])),
//! })
//! .await;
//! ```

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::docker::Container;
use super::http::{get, poll};
use super::wharf::Wharf;

/// `GET /api/state` on an admin address as JSON, or why not (transport
/// error, a status other than 200, a body that is not JSON).
pub async fn state_at(admin: SocketAddr) -> Result<Value, String> {
    let r = get(admin, "localhost", "/api/state").await?;
    if r.status != 200 {
        return Err(format!("/api/state answered {}: {}", r.status, r.body));
    }
    serde_json::from_str(&r.body).map_err(|e| format!("/api/state is not JSON ({e}): {}", r.body))
}

/// A counter or gauge without labels from `/metrics` on an admin address;
/// panics if `/metrics` does not answer 200 or has no such metric.
pub async fn metric_at(admin: SocketAddr, name: &str) -> u64 {
    let r = get(admin, "localhost", "/metrics").await.expect("GET /metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.body);
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics:\n{}", r.body))
}

/// Pool `name` of a state document.
pub fn find_pool<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["pools"].as_array()?.iter().find(|p| p["name"] == name)
}

/// The backends of pool `pool` (empty if there is no such pool).
pub fn pool_backends(state: &Value, pool: &str) -> Vec<Value> {
    find_pool(state, pool)
        .and_then(|p| p["backends"].as_array().cloned())
        .unwrap_or_default()
}

/// The backend of `pool` in container `container` (by name).
pub fn backend_named(state: &Value, pool: &str, container: &str) -> Option<Value> {
    pool_backends(state, pool)
        .into_iter()
        .find(|b| b["container"] == container)
}

/// The backend of `pool` at address `addr`.
pub fn backend_at(state: &Value, pool: &str, addr: SocketAddr) -> Option<Value> {
    pool_backends(state, pool)
        .into_iter()
        .find(|b| b["address"] == addr.to_string().as_str())
}

/// `(state, reason)` of the backend of `pool` in container `container`, e.g.
/// `("unhealthy", "health check: /health answered 500 …")`.
pub fn backend_state(state: &Value, pool: &str, container: &str) -> Option<(String, String)> {
    let b = backend_named(state, pool, container)?;
    Some((text(&b["state"], "?"), text(&b["reason"], "")))
}

/// The `state` of each backend of `pool`, in the document's order.
pub fn backend_states(state: &Value, pool: &str) -> Vec<String> {
    pool_backends(state, pool)
        .iter()
        .map(|b| text(&b["state"], "?"))
        .collect()
}

/// `(address, state)` of each backend of `pool`, sorted.
pub fn pool_view(state: &Value, pool: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pool_backends(state, pool)
        .iter()
        .map(|b| (text(&b["address"], "?"), text(&b["state"], "?")))
        .collect();
    v.sort();
    v
}

/// `(container, address)` of each ready backend of `pool`, sorted.
pub fn ready_backends(state: &Value, pool: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pool_backends(state, pool)
        .iter()
        .filter(|b| b["state"] == "ready")
        .map(|b| (text(&b["container"], ""), text(&b["address"], "")))
        .collect();
    v.sort();
    v
}

/// Why container `container` (by name) is skipped, if it is.
pub fn skip_reason(state: &Value, container: &str) -> Option<String> {
    state["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["container"] == container)
        .map(|s| text(&s["reason"], ""))
}

/// A JSON string as a `String`, `default` if it is not a string.
fn text(v: &Value, default: &str) -> String {
    v.as_str().unwrap_or(default).to_string()
}

/// Polls `/api/state` on an admin address until `check` accepts it (returns
/// `Ok`; its `Err` is the observation reported on timeout); returns what
/// `check` returned and the time it took.
pub async fn wait_state_at<T>(
    admin: SocketAddr,
    deadline: Duration,
    what: &str,
    check: impl Fn(&Value) -> Result<T, String>,
) -> (T, Duration) {
    poll(what, deadline, || async {
        let s = state_at(admin).await?;
        check(&s)
    })
    .await
}

/// Waits up to `deadline` until pool `pool` has exactly the backends `addrs`,
/// all ready; returns that state and the time it took. Each different view
/// on the way is printed, to tell a slow wharf from a wrong one.
pub async fn wait_pool(
    admin: SocketAddr,
    pool: &str,
    addrs: &[SocketAddr],
    deadline: Duration,
    what: &str,
) -> (Value, Duration) {
    let mut want: Vec<(String, String)> = addrs.iter().map(|a| (a.to_string(), "ready".to_string())).collect();
    want.sort();
    let start = Instant::now();
    let seen = Mutex::new(None::<Vec<(String, String)>>);
    wait_state_at(admin, deadline, what, |s| {
        let got = pool_view(s, pool);
        let mut last = seen.lock().unwrap();
        if last.as_ref() != Some(&got) {
            eprintln!("  {} ms: pool {pool} {got:?}", start.elapsed().as_millis());
            *last = Some(got.clone());
        }
        if got == want {
            Ok(s.clone())
        } else {
            Err(format!("pool {pool}: {got:?}, want {want:?}"))
        }
    })
    .await
}

/// Waits up to `deadline` until the ready backends of `pool` are exactly
/// the containers `want`, at their addresses on `net` (backends in other
/// states are not looked at); returns the time it took.
pub async fn wait_ready_backends(
    admin: SocketAddr,
    pool: &str,
    want: &[&Container],
    net: &str,
    deadline: Duration,
    what: &str,
) -> Duration {
    let mut expected: Vec<(String, String)> = want
        .iter()
        .map(|c| (c.name.clone(), c.addr(net, 80).to_string()))
        .collect();
    expected.sort();
    let check = |s: &Value| {
        let got = ready_backends(s, pool);
        if got == expected {
            Ok(())
        } else {
            Err(format!("pool {pool}: ready {got:?}, want {expected:?}"))
        }
    };
    wait_state_at(admin, deadline, what, check).await.1
}

impl Wharf {
    /// `GET /api/state` as JSON; panics unless it answers 200 with JSON.
    pub async fn state(&self) -> Value {
        let r = self
            .admin_get("/api/state")
            .await
            .unwrap_or_else(|e| panic!("GET /api/state: {e}"));
        assert_eq!(r.status, 200, "GET /api/state: {}", r.body);
        r.json()
    }

    /// The backends of pool `pool` in `/api/state` (empty if there is no such pool).
    pub async fn backends(&self, pool: &str) -> Vec<Value> {
        pool_backends(&self.state().await, pool)
    }

    /// A counter or gauge without labels from `/metrics` (see [`metric_at`]).
    pub async fn metric(&self, name: &str) -> u64 {
        metric_at(self.admin, name).await
    }

    /// Polls `/api/state` until the backend of `pool` in container
    /// `container` is in state `want`; returns its reason and the time it took.
    pub async fn wait_backend_state(
        &self,
        pool: &str,
        container: &str,
        want: &str,
        deadline: Duration,
    ) -> (String, Duration) {
        let what = format!("{container} in pool {pool} is {want}");
        poll(&what, deadline, || async {
            let s = self.state().await;
            match backend_state(&s, pool, container) {
                Some((st, reason)) if st == want => Ok(reason),
                Some((st, reason)) => Err(format!("state {st} ({reason})")),
                None => Err(format!("not in pool {pool}: {}", s["pools"])),
            }
        })
        .await
    }
}
