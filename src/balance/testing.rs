//! Pools, contexts and a closed-loop load simulation for the unit tests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Balancer, Context};
use crate::backend::{Backend, BackendShared};
use crate::model::BackendKey;
use crate::model::BackendStatus;

/// One instant for every test context, so tests that compare picks agree.
pub fn epoch() -> Instant {
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

/// Ready backends `c0`, `c1`, … on `10.0.0.1:80`, `10.0.0.2:80`, … with these
/// weights and fresh shared state. The same index always gets the same identity.
pub fn pool(weights: &[u32]) -> Vec<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0001 + i as u32), 80));
            Backend {
                key: BackendKey {
                    id: format!("c{i}"),
                    addr,
                },
                container: format!("c{i}"),
                addr,
                weight,
                status: BackendStatus::Ready,
                shared: Arc::new(BackendShared::default()),
            }
        })
        .collect()
}

/// Each backend's share of 100,000 picks (panics if a pick finds nothing).
pub fn shares(lb: &dyn Balancer, backends: &[Backend], eligible: &dyn Fn(usize) -> bool) -> Vec<f64> {
    let mut n = vec![0u32; backends.len()];
    let c = ctx();
    for _ in 0..100_000 {
        match lb.select(backends, &c, eligible) {
            Some(i) => n[i] += 1,
            None => panic!("no pick"),
        }
    }
    n.iter().map(|&c| f64::from(c) / 100_000.0).collect()
}

/// Shares within one percentage point of what was wanted.
pub fn assert_close(got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.01, "got {got:?}, want {want:?}");
    }
}

pub fn ctx() -> Context<'static> {
    ctx_from(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
}

pub fn ctx_from(ip: IpAddr) -> Context<'static> {
    Context::new(ip, epoch())
}

/// Closed-loop load in virtual time: `clients` clients each send a request,
/// wait for its answer and send the next, `requests` in all. Backend `i`
/// answers in `latency[i]`. In-flight counts and latency observations go
/// through the backends' shared state as the proxy does it. Returns the
/// number of requests each backend got.
pub fn simulate(
    lb: &dyn Balancer,
    backends: &[Backend],
    latency: &[Duration],
    clients: usize,
    requests: usize,
) -> Vec<u32> {
    let t0 = epoch();
    let mut counts = vec![0u32; backends.len()];
    // (done at, sequence number, backend)
    let mut pending: BinaryHeap<Reverse<(Duration, usize, usize)>> = BinaryHeap::new();
    let mut sent = 0usize;
    let mut send = |now: Duration, pending: &mut BinaryHeap<_>, sent: &mut usize| {
        let ctx = Context::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), t0 + now);
        let Some(i) = lb.select(backends, &ctx, &|_| true) else {
            panic!("no backend picked at {now:?}");
        };
        backends[i].shared.in_flight.fetch_add(1, Ordering::Relaxed);
        counts[i] += 1;
        pending.push(Reverse((now + latency[i], *sent, i)));
        *sent += 1;
    };
    for _ in 0..clients.min(requests) {
        send(Duration::ZERO, &mut pending, &mut sent);
    }
    while let Some(Reverse((now, _, i))) = pending.pop() {
        let shared = &backends[i].shared;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        shared.latency.observe(latency[i], t0 + now);
        if sent < requests {
            send(now, &mut pending, &mut sent);
        }
    }
    counts
}
