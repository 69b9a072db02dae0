//! The admin listener: `/healthz`, `/readyz`, `/api/state`, `/metrics` and a
//! dashboard at `/`. Never on the public listener: it shows container names
//! and addresses.

use std::convert::Infallible;
use std::fmt::Write as _;
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
use crate::proxy::{Proxy, Stats};
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
            "/metrics" => respond(StatusCode::OK, "text/plain; version=0.0.4", self.metrics()),
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
        state_json(
            &table,
            &idle,
            &self.discovery,
            self.discovery.ready.load(Ordering::Relaxed),
        )
    }

    /// A proxy counter summed over the workers.
    fn stat(&self, counter: impl Fn(&Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.proxies
            .iter()
            .map(|p| counter(&p.stats).load(Ordering::Relaxed))
            .sum()
    }

    fn metrics(&self) -> String {
        let table = self.router.load();
        let d = self.discovery.snapshot();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        counter(
            "wharf_requests_total",
            "Requests received on the public listener.",
            "counter",
            self.stat(|s| &s.requests),
        );
        counter(
            "wharf_retries_total",
            "Attempts on another backend after one could not be reached.",
            "counter",
            self.stat(|s| &s.retries),
        );
        counter(
            "wharf_panic_requests_total",
            "Requests sent in panic mode: every ready backend of the pool was ejected or failing checks.",
            "counter",
            self.stat(|s| &s.panics),
        );
        counter(
            "wharf_tunnels_open",
            "Upgraded connections (WebSockets) open now.",
            "gauge",
            self.proxies.iter().map(|p| p.tunnels.open() as u64).sum(),
        );
        counter(
            "wharf_tunnels_closed_by_wharf_total",
            "Tunnels wharf closed: idle past --tunnel-idle-timeout, backend gone or drained, shutdown.",
            "counter",
            self.proxies
                .iter()
                .map(|p| p.tunnels.closed_by_wharf.load(Ordering::Relaxed))
                .sum(),
        );
        counter(
            "wharf_connections_open",
            "Client connections open now (capped by --max-connections).",
            "gauge",
            self.proxies.first().map_or(0, |p| p.conn_limit.open() as u64),
        );
        counter(
            "wharf_connections_refused_total",
            "Client connections closed at once because --max-connections was reached.",
            "counter",
            self.proxies
                .first()
                .map_or(0, |p| p.conn_limit.refused.load(Ordering::Relaxed)),
        );
        counter(
            "wharf_discovery_connected",
            "1 while the Docker events stream is up.",
            "gauge",
            u64::from(d.connected),
        );
        counter(
            "wharf_discovery_reconnects_total",
            "Times the Docker connection was lost.",
            "counter",
            d.reconnects,
        );
        counter(
            "wharf_discovery_events_total",
            "Docker events received.",
            "counter",
            d.events,
        );
        counter(
            "wharf_discovery_syncs_total",
            "Full container listings.",
            "counter",
            d.syncs,
        );
        let _ = writeln!(
            out,
            "# HELP wharf_errors_total Requests answered by wharf itself, by cause.\n# TYPE wharf_errors_total counter"
        );
        type Field = fn(&Stats) -> &std::sync::atomic::AtomicU64;
        let kinds: [(&str, Field); 6] = [
            ("no_route", |s| &s.no_route),
            ("no_backend", |s| &s.no_backend),
            ("unreachable", |s| &s.unreachable),
            ("timeout", |s| &s.timeouts),
            ("client", |s| &s.client_errors),
            ("bad_response", |s| &s.bad_responses),
        ];
        for (kind, field) in kinds {
            let _ = writeln!(out, "wharf_errors_total{{kind=\"{kind}\"}} {}", self.stat(field));
        }
        let metrics: [(&str, &str, &str); 4] = [
            ("wharf_backend_requests_total", "counter", "Requests sent to a backend."),
            ("wharf_backend_errors_total", "counter", "Failed attempts on a backend."),
            ("wharf_backend_in_flight", "gauge", "Requests in flight on a backend."),
            ("wharf_backend_ready", "gauge", "1 if the backend takes new requests."),
        ];
        for (i, (name, kind, help)) in metrics.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in &table.pools {
                for b in &p.backends {
                    let v = match i {
                        0 => b.shared.requests.load(Ordering::Relaxed),
                        1 => b.shared.errors.load(Ordering::Relaxed),
                        2 => b.shared.in_flight.load(Ordering::Relaxed),
                        _ => u64::from(b.is_available(health::now_ms())),
                    };
                    let _ = writeln!(
                        out,
                        "{name}{{pool=\"{}\",backend=\"{}\",container=\"{}\"}} {v}",
                        p.name, b.addr, b.container
                    );
                }
            }
        }
        out
    }
}

/// The `/api/state` document.
/// `idle` counts a backend's idle upstream connections (by uid) over every worker.
pub fn state_json(table: &RoutingTable, idle: &dyn Fn(u64) -> usize, discovery: &Discovery, ready: bool) -> Value {
    let now = health::now_ms();
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
                        "latency_ms": (b.shared.latency.estimate(std::time::Instant::now()) / 1e3).round() / 1e3,
                    })
                })
                .collect();
            json!({
                "name": p.name,
                "balance": p.opts.balance.as_str(),
                "hosts": p.opts.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "path": p.opts.path,
                "strip_prefix": p.opts.strip_prefix,
                "retries": p.opts.retries,
                "max_conns": p.opts.max_conns,
                "panic": p.in_panic(now),
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
        "version": env!("CARGO_PKG_VERSION"),
        "ready": ready,
        "discovery": discovery.snapshot(),
        "pools": pools,
        "routes": routes,
        "skipped": table.desired.skipped,
        "problems": problems,
        "warnings": table.desired.warnings,
    })
}

/// A backend's state for people: why it does or doesn't take requests.
fn backend_state(b: &Backend, now: u64) -> (&'static str, Option<String>) {
    let h = &b.shared.health;
    match &b.status {
        BackendStatus::Waiting(why) => ("unhealthy", Some(why.clone())),
        BackendStatus::Draining => ("draining", Some("received a stop signal".into())),
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
        BackendStatus::Ready if h.is_ejected(now) => ("ejected", Some("consecutive delivery failures".into())),
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
