//! Active health checks: one prober task per backend of a pool with
//! `wharf.health.path`. The counting is [`crate::health`]'s (pure); this is
//! the I/O around it, started by the publisher after each swap.
//!
//! The task holds only a `Weak` reference to the backend's shared state, so it
//! ends by itself once the backend has left every routing table. Until the
//! backend first passes it probes every 100 ms (a new container is in
//! rotation within ~100 ms of becoming ready), then every `interval`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tracing::{info, warn};

use crate::backend::BackendShared;
use crate::model::HealthCheck;
use crate::net;
use crate::routing::RoutingTable;

const FAST_INTERVAL: Duration = Duration::from_millis(100);

/// Start a prober for every backend that needs one and has none yet.
/// Must run inside the tokio runtime.
pub fn ensure_probes(table: &RoutingTable) {
    for p in &table.pools {
        let Some(check) = &p.opts.health else { continue };
        for b in &p.backends {
            if b.shared.health.probe_started.swap(true, Ordering::Relaxed) {
                continue;
            }
            let weak = Arc::downgrade(&b.shared);
            tokio::spawn(run(weak, b.addr, check.clone(), p.name.clone(), b.container.clone()));
        }
    }
}

async fn run(weak: Weak<BackendShared>, addr: SocketAddr, check: HealthCheck, pool: String, container: String) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let result = probe_once(addr, &check).await;
        let flipped = shared.health.record_probe(result.is_ok());
        let counter = if result.is_ok() {
            &shared.probes_ok
        } else {
            &shared.probes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match (&result, flipped) {
            (Ok(()), Some(true)) => info!(pool, container, %addr, "health check passing: backend in rotation"),
            (Err(e), Some(false)) => {
                warn!(pool, container, %addr, error = %e, "health check failing: backend out of rotation")
            }
            _ => {}
        }
        *shared.health.last_probe_error.lock().unwrap_or_else(|e| e.into_inner()) = result.err();
        let delay = if shared.health.ever_up() {
            check.interval
        } else {
            FAST_INTERVAL
        };
        drop(shared);
        tokio::time::sleep(delay).await;
    }
}

/// One `GET path` on a fresh connection: passes on 2xx or 3xx within the timeout.
pub async fn probe_once(addr: SocketAddr, check: &HealthCheck) -> Result<(), String> {
    let attempt = async {
        let mut sender = net::connect::<Empty<Bytes>>(addr, check.timeout, false)
            .await
            .map_err(|e| e.to_string())?;
        let req = Request::get(check.path.as_str())
            .header(http::header::HOST, addr.to_string())
            .header(http::header::USER_AGENT, "wharf-health")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("{} answered {status}", check.path))
        }
    };
    tokio::time::timeout(check.timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", check.timeout)))
}
