//! The admin listener: `/healthz`, `/readyz`, `/api/state`, `/metrics` and a
//! dashboard at `/`. Never on the public listener: it shows container names
//! and addresses.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::health;
use crate::model::BackendStatus;
use crate::provider::Discovery;
use crate::proxy::Proxy;
use crate::routing::{Router, RoutingTable};

const DASHBOARD: &str = include_str!("dashboard.html");

#[derive(Debug)]
pub struct Admin {
    /// One per worker: their counters and idle connections are summed.
    pub proxies: Vec<Arc<Proxy>>,
    pub router: Arc<Router>,
    pub discovery: Arc<Discovery>,
    /// Set at SIGTERM: `/readyz` turns 503 so upstream load balancers stop sending.
    pub shutting_down: AtomicBool,
    /// The served certificates (`certificates` in `/api/state`).
    pub tls: Option<crate::tls::Tls>,
    /// ACME per-name status and order counters (`acme` in `/api/state`).
    pub acme: Option<Arc<crate::tls::acme::AcmeStatus>>,
    /// `--admin-hosts`, `--admin-token`.
    pub access: crate::admin_access::AdminAccess,
}

pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE: without a pause this loop spins on a
                        // listener that stays readable, starving `/healthz`.
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let admin = Arc::clone(&admin);
                let svc = service_fn(move |req| {
                    let admin = Arc::clone(&admin);
                    async move { Ok::<_, Infallible>(admin.handle(&req)) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                tokio::spawn(async move { let _ = conn.await; });
            }
            _ = &mut shutdown => return,
        }
    }
}

impl Admin {
    pub fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some((status, why)) = self.access.refuse(req.uri().path(), req.headers()) {
            return text(status, why);
        }
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.shutting_down.load(Ordering::Relaxed) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                } else if self.discovery.ready.load(Ordering::Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: waiting for the first full sync with Docker\n",
                    )
                }
            }
            "/api/state" => {
                let body = serde_json::to_string_pretty(&self.state()).unwrap_or_default();
                respond(StatusCode::OK, "application/json", body)
            }
            "/metrics" => respond(StatusCode::OK, crate::metrics::CONTENT_TYPE, self.metrics()),
            "/" | "/dashboard" => respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD.to_string()),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /, /api/state, /metrics, /healthz, /readyz\n",
            ),
        }
    }

    pub fn state(&self) -> Value {
        let table = self.router.load();
        let idle = |uid| self.proxies.iter().map(|p| p.upstreams.idle(uid)).sum();
        let mut state = state_json(
            &table,
            &idle,
            &self.discovery,
            self.discovery.ready.load(Ordering::Relaxed),
        );
        if let (Some(tls), Some(obj)) = (&self.tls, state.as_object_mut()) {
            obj.insert("certificates".into(), json!(tls.store.served()));
        }
        if let (Some(acme), Some(obj)) = (&self.acme, state.as_object_mut()) {
            obj.insert("acme".into(), acme.json());
        }
        state
    }

    /// The `/metrics` text (see [`crate::metrics`]).
    pub fn metrics(&self) -> String {
        crate::metrics::encode(&crate::metrics::Sources {
            router: Arc::clone(&self.router),
            discovery: Arc::clone(&self.discovery),
            proxies: self.proxies.clone(),
            tls: self.tls.clone(),
            acme: self.acme.clone(),
        })
    }
}

/// The version of the `/api/state` document (docs/api-state.md): bumped
/// when a field is removed or changes meaning; adding a field does not.
pub const STATE_SCHEMA: u32 = 1;

/// The `/api/state` document (its schema: docs/api-state.md).
/// `idle` counts a backend's idle upstream connections (by uid) over every worker.
pub fn state_json(table: &RoutingTable, idle: &dyn Fn(u64) -> usize, discovery: &Discovery, ready: bool) -> Value {
    let now = health::now_ms();
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let pools: Vec<Value> = table
        .pools
        .iter()
        .map(|p| {
            let backends: Vec<Value> = p
                .backends
                .iter()
                .map(|b| {
                    let (state, reason) = backend_state(b, now);
                    json!({
                        "id": b.key.id,
                        "container": b.container,
                        "address": b.addr.to_string(),
                        "weight": b.weight,
                        "state": state,
                        "reason": reason,
                        "in_flight": b.shared.in_flight.load(Ordering::Relaxed),
                        "requests": b.shared.requests.load(Ordering::Relaxed),
                        "errors": b.shared.errors.load(Ordering::Relaxed),
                        "idle_connections": idle(b.shared.uid),
                        "tunnels": b.shared.tunnels.load(Ordering::Relaxed),
                        "latency_ms": (b.shared.latency.estimate(std::time::Instant::now()) / 1e3).round() / 1e3,
                        "refusing_since_unix_ms": b.shared.health.refusals.refusing(now)
                            .map(|r| unix_ms.saturating_sub(r.for_.as_millis() as u64)),
                    })
                })
                .collect();
            let t = p.stats.totals();
            let (requests, errors) = t.requests_and_errors();
            json!({
                "name": p.name,
                "traffic": {
                    "requests": requests,
                    "errors_5xx": errors,
                    "duration_buckets": t.duration.buckets,
                },
                "balance": p.opts.balance.as_str(),
                "hosts": p.opts.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "path": p.opts.path,
                "strip_prefix": p.opts.strip_prefix,
                "retries": p.opts.retries,
                "max_conns": p.opts.max_conns,
                "connect": p.opts.connect,
                "panic": p.in_panic(now),
                "policies": p.policy.as_ref().map(|policy| policy.state()),
                "backends": backends,
            })
        })
        .collect();
    let routes: Vec<Value> = table
        .routes()
        .into_iter()
        .map(|(host, path, pool)| json!({"host": host, "path": path, "pool": pool}))
        .collect();
    let mut problems = table.desired.problems.clone();
    problems.extend(table.route_problems.iter().cloned());
    json!({
        "schema": STATE_SCHEMA,
        "version": env!("CARGO_PKG_VERSION"),
        "ready": ready,
        "discovery": discovery.snapshot(),
        "pools": pools,
        "routes": routes,
        "skipped": table.desired.skipped,
        "problems": problems,
        "warnings": table.desired.warnings,
        "events": discovery.control.recent(),
        "latency_bounds_ms": crate::stats::BOUNDS_US.map(|b| b as f64 / 1e3),
    })
}

/// A backend's state for people: why it does or doesn't take requests.
pub fn backend_state(b: &Backend, now: u64) -> (&'static str, Option<String>) {
    let h = &b.shared.health;
    let refusing = h.refusals.refusing(now).map(|r| {
        format!(
            "refusing connections for {} s ({} connects refused in a row)",
            r.for_.as_secs(),
            r.in_a_row
        )
    });
    match &b.status {
        BackendStatus::Waiting(why) => ("unhealthy", Some(why.clone())),
        BackendStatus::Draining => ("draining", Some("received a stop signal".into())),
        // A stop signal applied ahead of the next table (Router::drain_now).
        BackendStatus::Ready if b.shared.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            ("draining", Some("received a stop signal".into()))
        }
        BackendStatus::Ready if b.weight == 0 => ("draining", Some("weight 0".into())),
        BackendStatus::Ready if h.is_active_down() => {
            let why = h.last_probe_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (
                "unhealthy",
                Some(format!(
                    "health check: {}",
                    why.unwrap_or_else(|| "no passing probe yet".into())
                )),
            )
        }
        // Ejected first: that is what decides whether it gets requests.
        BackendStatus::Ready if h.is_ejected(now) => (
            "ejected",
            Some(match refusing {
                Some(r) => format!("consecutive delivery failures: {r}"),
                None => "consecutive delivery failures".into(),
            }),
        ),
        BackendStatus::Ready if refusing.is_some() => ("refusing", refusing),
        BackendStatus::Ready => ("ready", None),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}
