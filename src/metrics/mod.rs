//! `/metrics`: every metric family wharf exports, registered in one place
//! ([`registry`]) and encoded by the `prometheus-client` crate in the
//! Prometheus text format (0.0.4).
//!
//! Nothing here runs on the request path. The request path only bumps plain
//! per-worker atomics ([`crate::stats`] per pool, [`crate::proxy::Stats`]
//! per worker, [`crate::backend::BackendShared`] per backend); at scrape time
//! the collectors below read them — summing the workers — from the current
//! routing table. So label cardinality is bounded by what exists: a pool or
//! backend label appears only for pools and backends in the table, and is
//! gone from the next scrape after they leave. No path or client labels.
//!
//! Control-plane metrics (Docker events, swaps, event → swap times) are
//! ordinary `prometheus-client` metrics in [`control::Control`].
//!
//! # Adding a metric
//!
//! - A counter the control plane bumps: add a `prometheus-client` metric to
//!   a struct that lives as long as wharf (like [`control::Control`]) and
//!   `register` it in [`registry`].
//! - A figure read from the table or the workers at scrape time: add an
//!   `encode` call to one of the collectors (or a new collector registered in
//!   [`registry`]); [`counter`], [`gauge`] and [`histogram`] write one family.
//! - A request-path figure: a field in [`crate::stats::Slot`] (per pool) or
//!   [`crate::proxy::Stats`] (per worker), read by [`Requests`].

mod backends;
pub mod control;
mod policy;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::provider::Discovery;
use crate::proxy::{Proxy, Stats};
use crate::routing::Router;
use crate::stats::{HistogramTotals, CLASSES, METHODS, RETRY_CAUSES};

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What the collectors read.
#[derive(Debug, Clone)]
pub struct Sources {
    pub router: Arc<Router>,
    pub discovery: Arc<Discovery>,
    /// One per worker.
    pub proxies: Vec<Arc<Proxy>>,
    /// The served certificates (None: TLS off).
    pub tls: Option<crate::tls::Tls>,
    /// ACME order state (None: ACME off).
    pub acme: Option<Arc<crate::tls::acme::AcmeStatus>>,
}

/// The one place where families are registered.
pub fn registry(src: &Sources) -> Registry {
    let mut r = Registry::default();
    let c = &src.discovery.control;
    r.register(
        "wharf_docker_events",
        "Docker events received, by action (health_status without its value; unknown actions as other)",
        c.events.clone(),
    );
    r.register(
        "wharf_table_swaps",
        "Routing tables swapped in (each change of pools, backends or their states)",
        c.swaps.clone(),
    );
    r.register(
        "wharf_event_to_swap_seconds",
        "Time from a Docker event (its timestamp) to the swapped routing table that reflects it",
        c.event_to_swap.clone(),
    );
    r.register_collector(Box::new(Requests(src.clone())));
    r.register_collector(Box::new(backends::Backends(src.clone())));
    r.register_collector(Box::new(DiscoveryState(src.clone())));
    r.register_collector(Box::new(tls::Certificates(src.clone())));
    r.register_collector(Box::new(policy::Policies(src.clone())));
    r
}

/// The `/metrics` text.
pub fn encode(src: &Sources) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry(src));
    out
}

type Enc<'a, 'b> = &'a mut DescriptorEncoder<'b>;
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One family of counters: `name` (without `_total`), one series per label set.
pub fn counter<'l>(
    enc: Enc,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels<'l>, u64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help.trim_end_matches('.'), None, MetricType::Counter)?;
    for (labels, v) in series {
        if labels.is_empty() {
            m.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        } else {
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
    }
    Ok(())
}

/// One family of gauges.
pub fn gauge<'l>(
    enc: Enc,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels<'l>, i64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help.trim_end_matches('.'), None, MetricType::Gauge)?;
    for (labels, v) in series {
        if labels.is_empty() {
            m.encode_gauge(&v)?;
        } else {
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// One family of histograms (seconds).
pub fn histogram<'l>(
    enc: Enc,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels<'l>, HistogramTotals)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help.trim_end_matches('.'), None, MetricType::Histogram)?;
    for (labels, h) in series {
        let buckets = h.buckets_seconds();
        m.encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum_us as f64 / 1e6, h.count(), &buckets, None)?;
    }
    Ok(())
}

fn sum(proxies: &[Arc<Proxy>], f: impl Fn(&Stats) -> &AtomicU64) -> u64 {
    proxies.iter().map(|p| f(&p.stats).load(Ordering::Relaxed)).sum()
}

/// Requests: per worker and per pool, summed over the workers.
#[derive(Debug)]
struct Requests(Sources);

impl prometheus_client::collector::Collector for Requests {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let p = &self.0.proxies;
        let e = &mut enc;
        counter(
            e,
            "wharf_requests",
            "Requests received on the public listener.",
            [(vec![], sum(p, |s| &s.requests))],
        )?;
        counter(
            e,
            "wharf_retries",
            "Attempts on another backend after one could not be reached.",
            [(vec![], sum(p, |s| &s.retries))],
        )?;
        counter(
            e,
            "wharf_panic_requests",
            "Requests sent in panic mode: every ready backend of the pool was ejected or failing checks.",
            [(vec![], sum(p, |s| &s.panics))],
        )?;
        type Field = fn(&Stats) -> &AtomicU64;
        let kinds: [(&str, Field); 7] = [
            ("no_route", |s| &s.no_route),
            ("no_backend", |s| &s.no_backend),
            ("unreachable", |s| &s.unreachable),
            ("timeout", |s| &s.timeouts),
            ("client", |s| &s.client_errors),
            ("bad_response", |s| &s.bad_responses),
            ("refused", |s| &s.refused),
        ];
        counter(
            e,
            "wharf_errors",
            "Requests answered by wharf itself, by cause (the x-wharf-error kind).",
            kinds.iter().map(|(k, f)| (vec![("kind", *k)], sum(p, f))),
        )?;
        gauge(
            e,
            "wharf_client_connections",
            "Open client connections on the public listener, by protocol.",
            [("http1", 0), ("h2", 1)]
                .map(|(proto, i)| (vec![("protocol", proto)], sum(p, |s| &s.connections[i]) as i64)),
        )?;
        // The connection cap is shared by every worker: read it once.
        let limit = p.first().map(|w| &w.conn_limit);
        gauge(
            e,
            "wharf_connections_open",
            "Client connections open now, every listener (capped by --max-connections).",
            [(vec![], limit.map_or(0, |l| l.open() as i64))],
        )?;
        counter(
            e,
            "wharf_connections_refused",
            "Client connections closed at once because --max-connections was reached.",
            [(vec![], limit.map_or(0, |l| l.refused.load(Ordering::Relaxed)))],
        )?;
        gauge(
            e,
            "wharf_tunnels_open",
            "Upgraded connections (WebSockets) open now.",
            [(vec![], p.iter().map(|w| w.tunnels.open() as i64).sum())],
        )?;
        counter(
            e,
            "wharf_tunnels_closed_by_wharf",
            "Tunnels wharf closed: idle past --tunnel-idle-timeout, backend gone or drained, shutdown.",
            [(
                vec![],
                p.iter()
                    .map(|w| w.tunnels.closed_by_wharf.load(Ordering::Relaxed))
                    .sum(),
            )],
        )?;

        let table = self.0.router.load();
        let totals: Vec<_> = table
            .pools
            .iter()
            .map(|pool| (pool.name.as_str(), pool.stats.totals()))
            .collect();
        let mut by_class = Vec::new();
        for (pool, t) in &totals {
            for (m, row) in METHODS.iter().zip(&t.requests) {
                for (class, n) in CLASSES.iter().zip(row) {
                    if *n > 0 {
                        by_class.push((vec![("pool", *pool), ("method", *m), ("class", *class)], *n));
                    }
                }
            }
        }
        counter(
            e,
            "wharf_pool_requests",
            "Requests routed to a pool, by method and status class (wharf's own 502/503/504 included).",
            by_class,
        )?;
        histogram(
            e,
            "wharf_pool_request_duration_seconds",
            "Request received → response head (the backend's, or wharf's own answer), per pool.",
            totals
                .iter()
                .map(|(pool, t)| (vec![("pool", *pool)], t.duration.clone())),
        )?;
        histogram(
            e,
            "wharf_pool_upstream_ttfb_seconds",
            "Request sent to the backend → its response head (the answering attempt; a first attempt counts from the request's arrival), per pool.",
            totals
                .iter()
                .map(|(pool, t)| (vec![("pool", *pool)], t.upstream.clone())),
        )?;
        counter(
            e,
            "wharf_pool_request_bytes",
            "Request body bytes routed to a pool (declared lengths at the head; chunked bodies as they stream).",
            totals.iter().map(|(pool, t)| (vec![("pool", *pool)], t.request_bytes)),
        )?;
        counter(
            e,
            "wharf_pool_response_bytes",
            "Response body bytes sent from a pool (declared lengths at the head; chunked bodies as they stream).",
            totals.iter().map(|(pool, t)| (vec![("pool", *pool)], t.response_bytes)),
        )?;
        counter(
            e,
            "wharf_pool_retries",
            "Retries on another backend, by cause: not_sent (never reached a backend), lost (connection died before the response; idempotent request replayed).",
            totals.iter().flat_map(|(pool, t)| {
                RETRY_CAUSES
                    .iter()
                    .zip(t.retries)
                    .map(move |(cause, n)| (vec![("pool", *pool), ("cause", *cause)], n))
            }),
        )?;
        counter(
            e,
            "wharf_pool_retry_budget_exhausted",
            "Retries refused by the pool's retry budget (the request got 502).",
            totals
                .iter()
                .map(|(pool, t)| (vec![("pool", *pool)], t.budget_exhausted)),
        )?;
        Ok(())
    }
}

/// The provider's connection and wharf's build.
#[derive(Debug)]
struct DiscoveryState(Sources);

impl prometheus_client::collector::Collector for DiscoveryState {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let d = self.0.discovery.snapshot();
        let e = &mut enc;
        gauge(
            e,
            "wharf_discovery_connected",
            "1 while the Docker events stream is up.",
            [(vec![], i64::from(d.connected))],
        )?;
        counter(
            e,
            "wharf_discovery_reconnects",
            "Times the Docker connection was lost.",
            [(vec![], d.reconnects)],
        )?;
        counter(
            e,
            "wharf_discovery_events",
            "Docker events received.",
            [(vec![], d.events)],
        )?;
        counter(
            e,
            "wharf_discovery_syncs",
            "Full container listings.",
            [(vec![], d.syncs)],
        )?;
        counter(
            e,
            "wharf_discovery_lookups",
            "Look-ups of just the containers a burst of events named.",
            [(vec![], d.lookups)],
        )?;
        gauge(
            e,
            "wharf_build_info",
            "Always 1; the labels say which wharf this is.",
            [(vec![("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;
        Ok(())
    }
}
