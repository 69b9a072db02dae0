use super::*;
use crate::model::{DesiredBackend, DesiredPool};
use std::time::Duration;

fn pool(hosts: &[&str], path: Option<&str>, addrs: &[&str]) -> DesiredPool {
    let opts = PoolOptions {
        hosts: hosts
            .iter()
            .map(|h| match h.strip_prefix('*') {
                Some(sfx) => HostPattern::Wildcard(sfx.to_string()),
                None => HostPattern::Exact(h.to_string()),
            })
            .collect(),
        path: path.map(String::from),
        ..PoolOptions::default()
    };
    let backends = addrs
        .iter()
        .map(|a| DesiredBackend {
            id: format!("id-{a}"),
            container: format!("c-{a}"),
            addr: a.parse().unwrap(),
            weight: 1,
            status: BackendStatus::Ready,
        })
        .collect();
    DesiredPool { opts, backends }
}

fn desired(pools: Vec<(&str, DesiredPool)>) -> Desired {
    Desired {
        pools: pools.into_iter().map(|(n, p)| (n.to_string(), p)).collect(),
        ..Desired::default()
    }
}

fn routed(t: &RoutingTable, host: &str, path: &str) -> Option<String> {
    t.route(host, path).map(|m| m.pool.name.clone())
}

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let t = RoutingTable::build(
        desired(vec![
            ("exact", pool(&["api.example.com"], None, &["10.0.0.1:80"])),
            ("wild", pool(&["*.example.com"], None, &["10.0.0.2:80"])),
            ("any", pool(&[], None, &["10.0.0.3:80"])),
        ]),
        &Registry::default(),
        None,
    );
    assert_eq!(routed(&t, "api.example.com", "/").as_deref(), Some("exact"));
    assert_eq!(routed(&t, "www.example.com", "/").as_deref(), Some("wild"));
    assert_eq!(routed(&t, "a.b.example.com", "/x").as_deref(), Some("wild"));
    assert_eq!(routed(&t, "example.com", "/").as_deref(), Some("any"));
    assert_eq!(routed(&t, "other.test", "/").as_deref(), Some("any"));
}

#[test]
fn longest_path_prefix_wins_on_segment_boundaries() {
    let t = RoutingTable::build(
        desired(vec![
            ("api", pool(&[], Some("/api"), &["10.0.0.1:80"])),
            ("v2", pool(&[], Some("/api/v2"), &["10.0.0.2:80"])),
            ("root", pool(&[], None, &["10.0.0.3:80"])),
        ]),
        &Registry::default(),
        None,
    );
    assert_eq!(routed(&t, "h", "/api/v2/users").as_deref(), Some("v2"));
    assert_eq!(routed(&t, "h", "/api/v2").as_deref(), Some("v2"));
    assert_eq!(routed(&t, "h", "/api/v1").as_deref(), Some("api"));
    assert_eq!(routed(&t, "h", "/apix").as_deref(), Some("root"));
    assert_eq!(t.route("h", "/api/x").unwrap().prefix_len, 4);
}

#[test]
fn no_matching_route_is_none() {
    let t = RoutingTable::build(
        desired(vec![("api", pool(&["a.test"], Some("/api"), &["10.0.0.1:80"]))]),
        &Registry::default(),
        None,
    );
    assert!(t.route("a.test", "/").is_none());
    assert!(t.route("b.test", "/api").is_none());
    assert!(RoutingTable::default().route("a.test", "/").is_none());
}

#[test]
fn a_host_tier_without_a_path_match_falls_through_to_the_next_tier() {
    let t = RoutingTable::build(
        desired(vec![
            ("exact", pool(&["a.test"], Some("/only"), &["10.0.0.1:80"])),
            ("any", pool(&[], None, &["10.0.0.2:80"])),
        ]),
        &Registry::default(),
        None,
    );
    assert_eq!(routed(&t, "a.test", "/only/x").as_deref(), Some("exact"));
    assert_eq!(routed(&t, "a.test", "/other").as_deref(), Some("any"));
}

#[test]
fn two_pools_on_the_same_route_are_reported_and_resolved_by_name() {
    let t = RoutingTable::build(
        desired(vec![
            ("b", pool(&[], Some("/x"), &["10.0.0.1:80"])),
            ("a", pool(&[], Some("/x"), &["10.0.0.2:80"])),
        ]),
        &Registry::default(),
        None,
    );
    assert_eq!(routed(&t, "h", "/x").as_deref(), Some("a"));
    assert_eq!(t.route_problems.len(), 1, "{:?}", t.route_problems);
    assert!(t.route_problems[0].contains("route conflict"));
}

#[test]
fn backend_state_survives_a_swap_and_a_new_address_is_a_new_backend() {
    let router = Router::default();
    assert!(router.update(desired(vec![("web", pool(&[], None, &["10.0.0.1:80"]))])));
    let first = router.load();
    first.pools[0].backends[0]
        .shared
        .requests
        .fetch_add(7, Ordering::Relaxed);
    // An unrelated change swaps the table; the backend keeps its counters.
    assert!(router.update(desired(vec![
        ("web", pool(&[], None, &["10.0.0.1:80"])),
        ("other", pool(&[], None, &["10.0.0.9:80"])),
    ])));
    let second = router.load();
    let web = second.pools.iter().find(|p| p.name == "web").unwrap();
    assert_eq!(web.backends[0].shared.requests.load(Ordering::Relaxed), 7);
    assert!(Arc::ptr_eq(&web.backends[0].shared, &first.pools[0].backends[0].shared));
    drop((first, second));
    // Same container id on another address: fresh state.
    let mut moved = pool(&[], None, &["10.0.0.5:80"]);
    moved.backends[0].id = "id-10.0.0.1:80".into();
    router.update(desired(vec![("web", moved)]));
    assert_eq!(
        router.load().pools[0].backends[0]
            .shared
            .requests
            .load(Ordering::Relaxed),
        0
    );
}

#[test]
fn an_unchanged_desired_state_does_not_swap() {
    let router = Router::default();
    let d = desired(vec![("web", pool(&[], None, &["10.0.0.1:80"]))]);
    assert!(router.update(d.clone()));
    let before = router.load();
    assert!(!router.update(d));
    assert!(Arc::ptr_eq(&before, &router.load()));
}

#[test]
fn draining_backends_are_not_ready_and_a_pool_of_them_has_none() {
    let mut p = pool(&[], None, &["10.0.0.1:80", "10.0.0.2:80"]);
    p.backends[0].status = BackendStatus::Draining;
    p.backends[1].weight = 0;
    let t = RoutingTable::build(desired(vec![("web", p)]), &Registry::default(), None);
    assert!(!t.pools[0].has_ready());
    assert!(t.pools[0].backends[0].shared.draining.load(Ordering::Relaxed));
}

#[test]
fn prefix_match_respects_segments_and_queries() {
    assert!(prefix_match("/api", "/api"));
    assert!(prefix_match("/api", "/api/"));
    assert!(prefix_match("/api", "/api?x=1"));
    assert!(!prefix_match("/api", "/apix"));
    assert!(!prefix_match("/api", "/ap"));
}

#[test]
fn an_unchanged_pool_keeps_its_balancer_across_an_unrelated_swap() {
    let router = Router::default();
    router.update(desired(vec![("web", pool(&[], None, &["10.0.0.1:80", "10.0.0.2:80"]))]));
    let before = router.load();
    let mut d = desired(vec![("web", pool(&[], None, &["10.0.0.1:80", "10.0.0.2:80"]))]);
    d.skipped.push(crate::model::Skipped {
        id: "x".into(),
        container: "x".into(),
        reason: "test".into(),
    });
    assert!(router.update(d));
    let after = router.load();
    assert!(!Arc::ptr_eq(&before, &after), "the table was swapped");
    assert!(
        Arc::ptr_eq(&before.pools[0], &after.pools[0]),
        "the pool (and its round-robin position) was kept"
    );
}

#[test]
fn a_build_starts_the_slow_start_ramp_of_ready_backends_only_and_never_restarts_a_running_one() {
    let mut d = desired(vec![("web", pool(&[], None, &["10.0.0.1:80", "10.0.0.2:80"]))]);
    d.pools.get_mut("web").unwrap().backends[1].status = BackendStatus::Draining;
    let registry = Registry::default();
    let t = Instant::now();
    let first = RoutingTable::build_at(d.clone(), &registry, None, t);
    let b = &first.pools[0].backends;
    assert_eq!(
        b[0].shared.ready_since.elapsed(t + Duration::from_secs(1)),
        Some(Duration::from_secs(1))
    );
    assert_eq!(b[1].shared.ready_since.elapsed(t), None, "draining: no ramp");
    // A later build does not restart a running ramp.
    let later = RoutingTable::build_at(d, &registry, None, t + Duration::from_secs(5));
    assert_eq!(
        later.pools[0].backends[0]
            .shared
            .ready_since
            .elapsed(t + Duration::from_secs(6)),
        Some(Duration::from_secs(6))
    );
}
