//! Backend families: one series per backend of the current table (state,
//! in flight, requests, errors, ejections, health probes), so a backend's
//! series leave with it.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, gauge, Labels, Sources};
use crate::admin::backend_state;
use crate::health;

/// Backends of the current table: states, in flight, health.
#[derive(Debug)]
pub(super) struct Backends(pub(super) Sources);

/// The states of `wharf_backend_state`.
const STATES: [&str; 7] = [
    "ready",
    "slow_start",
    "draining",
    "unhealthy",
    "refusing",
    "ejected",
    "waiting",
];

impl prometheus_client::collector::Collector for Backends {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let table = self.0.router.load();
        let now = health::now_ms();
        let instant = std::time::Instant::now();
        let rows: Vec<(Labels, &crate::backend::Backend, &'static str)> = table
            .pools
            .iter()
            .flat_map(|p| {
                p.backends.iter().map(move |b| {
                    let (mut state, _) = backend_state(b, now);
                    let ramping = !p.opts.slow_start.is_zero()
                        && b.shared
                            .ready_since
                            .elapsed(instant)
                            .is_some_and(|e| e < p.opts.slow_start);
                    if state == "ready" && ramping {
                        state = "slow_start";
                    }
                    (
                        vec![("pool", p.name.as_str()), ("container", b.container.as_str())],
                        b,
                        state,
                    )
                })
            })
            .collect();
        let rows = &rows;
        // The address is a label too: a container may serve on several.
        let addrs: Vec<String> = rows.iter().map(|(_, b, _)| b.addr.to_string()).collect();
        let addrs = &addrs;
        let labels = move |i: usize| {
            let mut l = rows[i].0.clone();
            l.push(("backend", addrs[i].as_str()));
            l
        };
        let each = |f: &dyn Fn(&crate::backend::Backend) -> u64| {
            (0..rows.len()).map(|i| (labels(i), f(rows[i].1))).collect::<Vec<_>>()
        };
        let e = &mut enc;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            e,
            "wharf_backend_requests",
            "Requests sent to a backend.",
            each(&|b| load(&b.shared.requests)),
        )?;
        counter(
            e,
            "wharf_backend_errors",
            "Failed attempts on a backend.",
            each(&|b| load(&b.shared.errors)),
        )?;
        counter(
            e,
            "wharf_backend_ejections",
            "Times a backend was ejected after consecutive delivery failures.",
            each(&|b| load(&b.shared.ejections)),
        )?;
        gauge(
            e,
            "wharf_backend_in_flight",
            "Requests in flight on a backend (until the response body ends).",
            each(&|b| load(&b.shared.in_flight))
                .into_iter()
                .map(|(l, v)| (l, v as i64)),
        )?;
        gauge(
            e,
            "wharf_backend_tunnels_open",
            "Open tunnels (WebSocket and other upgrades, CONNECT) to a backend; each also counts in flight.",
            each(&|b| load(&b.shared.tunnels))
                .into_iter()
                .map(|(l, v)| (l, v as i64)),
        )?;
        gauge(
            e,
            "wharf_backend_ready",
            "1 if the backend takes new requests.",
            each(&|b| u64::from(b.is_available(now)))
                .into_iter()
                .map(|(l, v)| (l, v as i64)),
        )?;
        gauge(
            e,
            "wharf_backend_state",
            "1 for the backend's current state (ready, slow_start, draining, unhealthy, refusing, ejected, waiting), 0 for the others.",
            (0..rows.len()).flat_map(|i| {
                STATES.iter().map(move |s| {
                    let mut l = labels(i);
                    l.push(("state", s));
                    (l, i64::from(rows[i].2 == *s))
                })
            }),
        )?;
        counter(
            e,
            "wharf_health_probes",
            "Active health-check probes, by result.",
            (0..rows.len()).flat_map(|i| {
                let b = rows[i].1;
                [
                    ("ok", load(&b.shared.probes_ok)),
                    ("failed", load(&b.shared.probes_failed)),
                ]
                .into_iter()
                .filter(|_| b.shared.health.probe_started.load(Ordering::Relaxed))
                .map(move |(result, n)| {
                    let mut l = labels(i);
                    l.push(("result", result));
                    (l, n)
                })
            }),
        )?;
        Ok(())
    }
}
