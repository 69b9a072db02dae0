//! Properties every algorithm shares, through [`build`].

use std::time::Duration;

use super::testing::{ctx, epoch, pool, simulate};
use super::*;
use crate::model::Sticky as StickyOpt;

fn opts(balance: Balance, sticky: bool) -> PoolOptions {
    PoolOptions {
        balance,
        sticky: sticky.then(|| StickyOpt { cookie: "s".into() }),
        ..PoolOptions::default()
    }
}

fn every_variant() -> Vec<PoolOptions> {
    let mut v = Vec::new();
    for &b in Balance::ALL {
        for sticky in [false, true] {
            v.push(opts(b, sticky));
            // Built at `epoch()` and asked at `epoch()`: every backend is ramping.
            v.push(PoolOptions {
                slow_start: Duration::from_secs(10),
                ..opts(b, sticky)
            });
        }
    }
    v
}

#[test]
fn an_empty_pool_gives_none_without_panic_for_every_algorithm() {
    for o in every_variant() {
        let lb = build_with(&o, &[], Rng::new(1));
        assert_eq!(lb.select(&[], &ctx(), &|_| true), None, "{o:?}");
    }
}

#[test]
fn no_algorithm_picks_an_ineligible_or_zero_weight_backend() {
    let backends = pool(&[2, 0, 1, 3, 1]);
    let rng = Rng::new(5);
    for o in every_variant() {
        let lb = build_with(&o, &backends, Rng::new(2));
        for round in 0..2_000 {
            let out = rng.below(5) as usize;
            let eligible = |i: usize| i != out;
            let mut c = ctx();
            c.client_ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(round as u32));
            let Some(i) = lb.select(&backends, &c, &eligible) else {
                panic!("{:?}: nothing picked", o.balance);
            };
            assert!(i != out && i != 1, "{:?} picked {i} (ineligible {out})", o.balance);
        }
        assert_eq!(lb.select(&backends, &ctx(), &|i| i == 1), None, "{:?}", o.balance);
    }
}

#[test]
fn weights_3_1_give_75_25_for_every_algorithm_that_is_not_load_based() {
    let backends = pool(&[3, 1]);
    for b in [
        Balance::RoundRobin,
        Balance::Random,
        Balance::IpHash,
        Balance::LeastConn,
    ] {
        let lb = build_with(&opts(b, false), &backends, Rng::new(11));
        let mut first = 0u32;
        for n in 0..40_000u32 {
            let mut c = ctx();
            c.client_ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            first += u32::from(lb.select(&backends, &c, &|_| true) == Some(0));
        }
        let share = f64::from(first) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{b:?}: {share}");
    }
}

#[test]
fn least_conn_steers_away_from_a_backend_ten_times_slower() {
    let backends = pool(&[1, 1, 1]);
    let lb = build_with(&opts(Balance::LeastConn, false), &backends, Rng::new(1));
    let lat = [10, 10, 100].map(Duration::from_millis);
    let n = simulate(lb.as_ref(), &backends, &lat, 8, 3_000);
    let slow = f64::from(n[2]) / 3_000.0;
    eprintln!("least_conn, 8 clients, latencies 10/10/100 ms: picks {n:?}, slow share {slow:.3}");
    assert!(slow < 0.15, "{n:?}");
}

#[test]
fn a_backend_in_slow_start_gets_a_growing_share_of_round_robin() {
    let backends = pool(&[1, 1]);
    let o = PoolOptions {
        slow_start: Duration::from_secs(10),
        ..PoolOptions::default()
    };
    let t = epoch();
    backends[0].shared.ready_since.mark(t);
    // Backend 1 becomes ready at t + 60 s (as a table built then marks it).
    backends[1].shared.ready_since.mark(t + Duration::from_secs(60));
    let lb = build_with(&o, &backends, Rng::new(1));
    let share_at = |after: u64| {
        let mut c = ctx();
        c.now = t + Duration::from_secs(60 + after);
        let picks: Vec<_> = (0..1100).filter_map(|_| lb.select(&backends, &c, &|_| true)).collect();
        picks.iter().filter(|&&i| i == 1).count() as f64 / picks.len() as f64
    };
    let shares: Vec<f64> = [0, 5, 10].iter().map(|&s| share_at(s)).collect();
    // weight 0.1 vs 1, then 0.5 vs 1, then 1 vs 1.
    for (got, want) in shares.iter().zip([0.1 / 1.1, 0.5 / 1.5, 0.5]) {
        assert!((got - want).abs() < 0.01, "{shares:?}");
    }
}

#[test]
fn latency_in_flight_and_the_ramp_survive_a_routing_swap_that_rebuilds_the_balancer() {
    use crate::model::{BackendStatus, Desired, DesiredBackend, DesiredPool};
    use crate::routing::Router;

    let backend = |n: u8| DesiredBackend {
        id: format!("id-{n}"),
        container: format!("c-{n}"),
        addr: std::net::SocketAddr::from(([10, 0, 0, n], 80)),
        weight: 1,
        status: BackendStatus::Ready,
    };
    let desired = |n: u8| {
        let pool = DesiredPool {
            opts: opts(Balance::P2c, false),
            backends: (1..=n).map(backend).collect(),
        };
        Desired {
            pools: [("api".to_string(), pool)].into_iter().collect(),
            ..Desired::default()
        }
    };
    let router = Router::default();
    assert!(router.update(desired(1)));
    let t = epoch();
    let before = router.load();
    let first = &before.pools[0].backends[0];
    first.shared.latency.observe(Duration::from_millis(250), t);
    first.shared.in_flight.store(3, std::sync::atomic::Ordering::Relaxed);
    let since = first.shared.ready_since.elapsed(t + Duration::from_secs(100));

    assert!(
        router.update(desired(2)),
        "a backend joined: the pool and its balancer are rebuilt"
    );
    let after = router.load();
    let same = &after.pools[0].backends[0];
    assert_eq!(same.key, first.key);
    assert_eq!(same.shared.latency.estimate(t), 250e6);
    assert_eq!(same.shared.in_flight.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(same.shared.ready_since.elapsed(t + Duration::from_secs(100)), since);
    assert_eq!(
        after.pools[0].backends[1].shared.latency.estimate(t),
        30e6,
        "the new one starts fresh"
    );
}
