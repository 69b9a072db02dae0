use super::*;

fn container(id: &str, created: i64, labels: &[(&str, &str)], networks: &[(&str, &str)]) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: format!("name-{id}"),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        networks: networks
            .iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().ok()))
            .collect(),
        exposed_ports: vec![80],
        created,
        paused: false,
        health: Health::None,
    }
}

fn settings() -> Settings {
    Settings {
        label_prefix: "wharf".into(),
        ..Settings::default()
    }
}

#[test]
fn a_labelled_container_on_one_network_becomes_a_ready_backend() {
    let c = container("a", 1, &[("wharf.pool", "web")], &[("net", "172.18.0.2")]);
    let d = derive(&[c], &HashSet::new(), &settings());
    let web = &d.pools["web"];
    assert_eq!(web.backends.len(), 1);
    assert_eq!(web.backends[0].addr, "172.18.0.2:80".parse().unwrap());
    assert_eq!(web.backends[0].status, BackendStatus::Ready);
    assert!(d.skipped.is_empty());
}

#[test]
fn unlabelled_containers_are_ignored_not_skipped() {
    let c = container("a", 1, &[], &[("net", "172.18.0.2")]);
    let d = derive(&[c], &HashSet::new(), &settings());
    assert!(d.pools.is_empty() && d.skipped.is_empty());
}

#[test]
fn a_bad_label_skips_that_container_only_with_the_reason() {
    let good = container("a", 1, &[("wharf.pool", "web")], &[("net", "172.18.0.2")]);
    let bad = container(
        "b",
        2,
        &[("wharf.pool", "web"), ("wharf.port", "http")],
        &[("net", "172.18.0.3")],
    );
    let d = derive(&[good, bad], &HashSet::new(), &settings());
    assert_eq!(d.pools["web"].backends.len(), 1);
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.skipped[0].container, "name-b");
    assert!(d.skipped[0].reason.contains("wharf.port"), "{}", d.skipped[0].reason);
}

#[test]
fn two_networks_without_a_choice_are_ambiguous_and_the_label_resolves_it() {
    let nets = [("front", "172.18.0.2"), ("back", "172.19.0.2")];
    let c = container("a", 1, &[("wharf.pool", "web")], &nets);
    let d = derive(&[c], &HashSet::new(), &settings());
    assert!(d.pools.is_empty());
    assert!(d.skipped[0].reason.contains("ambiguous"), "{}", d.skipped[0].reason);
    assert!(
        d.skipped[0].reason.contains("back, front"),
        "names in sorted order: {}",
        d.skipped[0].reason
    );

    let c = container("a", 1, &[("wharf.pool", "web"), ("wharf.network", "back")], &nets);
    let d = derive(&[c], &HashSet::new(), &settings());
    assert_eq!(d.pools["web"].backends[0].addr, "172.19.0.2:80".parse().unwrap());
}

#[test]
fn network_flag_and_wharfs_own_network_choose_the_address() {
    let nets = [("front", "172.18.0.2"), ("back", "172.19.0.2")];
    let mut s = settings();
    s.network = Some("front".into());
    let d = derive(
        &[container("a", 1, &[("wharf.pool", "web")], &nets)],
        &HashSet::new(),
        &s,
    );
    assert_eq!(d.pools["web"].backends[0].addr.ip().to_string(), "172.18.0.2");

    let me = container("me", 0, &[], &[("back", "172.19.0.9")]);
    let s = Settings {
        self_id: Some("me".into()),
        ..settings()
    };
    let d = derive(
        &[me, container("a", 1, &[("wharf.pool", "web")], &nets)],
        &HashSet::new(),
        &s,
    );
    assert_eq!(d.pools["web"].backends[0].addr.ip().to_string(), "172.19.0.2");
}

#[test]
fn a_label_naming_a_network_the_container_is_not_on_is_skipped() {
    let c = container(
        "a",
        1,
        &[("wharf.pool", "web"), ("wharf.network", "nope")],
        &[("net", "172.18.0.2")],
    );
    let d = derive(&[c], &HashSet::new(), &settings());
    assert!(
        d.skipped[0].reason.contains("not on network \"nope\""),
        "{}",
        d.skipped[0].reason
    );
}

#[test]
fn draining_paused_and_unhealthy_containers_stay_listed_but_not_ready() {
    let mut paused = container("p", 2, &[("wharf.pool", "web")], &[("net", "172.18.0.3")]);
    paused.paused = true;
    let mut starting = container("s", 3, &[("wharf.pool", "web")], &[("net", "172.18.0.4")]);
    starting.health = Health::Starting;
    let draining = container("d", 1, &[("wharf.pool", "web")], &[("net", "172.18.0.2")]);
    let d = derive(
        &[paused, starting, draining],
        &HashSet::from(["d".to_string()]),
        &settings(),
    );
    let states: Vec<_> = d.pools["web"].backends.iter().map(|b| b.status.as_str()).collect();
    assert_eq!(states, ["draining", "unhealthy", "unhealthy"]);
}

#[test]
fn pool_wide_disagreement_is_reported_and_the_oldest_member_wins() {
    let young = container(
        "y",
        5,
        &[("wharf.pool", "web"), ("wharf.path", "/new")],
        &[("net", "172.18.0.3")],
    );
    let old = container(
        "o",
        1,
        &[("wharf.pool", "web"), ("wharf.path", "/old")],
        &[("net", "172.18.0.2")],
    );
    let d = derive(&[young, old], &HashSet::new(), &settings());
    assert_eq!(d.pools["web"].opts.path.as_deref(), Some("/old"));
    assert_eq!(d.pools["web"].backends.len(), 2);
    assert_eq!(d.problems.len(), 1);
    assert!(
        d.problems[0].contains("wharf.path") && d.problems[0].contains("name-o"),
        "{}",
        d.problems[0]
    );
}

#[test]
fn the_result_does_not_depend_on_listing_order() {
    let a = container("a", 1, &[("wharf.pool", "web")], &[("net", "172.18.0.2")]);
    let b = container("b", 1, &[("wharf.pool", "web")], &[("net", "172.18.0.3")]);
    let d1 = derive(&[a.clone(), b.clone()], &HashSet::new(), &settings());
    let d2 = derive(&[b, a], &HashSet::new(), &settings());
    assert_eq!(d1, d2);
}

#[test]
fn wharfs_own_container_is_never_a_backend() {
    let me = container("me", 0, &[("wharf.pool", "web")], &[("net", "172.18.0.9")]);
    let s = Settings {
        self_id: Some("me".into()),
        ..settings()
    };
    assert!(derive(&[me], &HashSet::new(), &s).pools.is_empty());
}

#[test]
fn health_is_read_from_the_status_text_of_older_daemons() {
    assert_eq!(
        Health::from_status_text("Up 3 seconds (health: starting)"),
        Health::Starting
    );
    assert_eq!(Health::from_status_text("Up 1 minute (healthy)"), Health::Healthy);
    assert_eq!(Health::from_status_text("Up 1 minute (unhealthy)"), Health::Unhealthy);
    assert_eq!(Health::from_status_text("Up 2 hours"), Health::None);
}

#[test]
fn wharf_in_a_container_skips_backends_that_share_none_of_its_networks() {
    let me = container("me", 0, &[], &[("mine", "172.20.0.9")]);
    let other = container("a", 1, &[("wharf.pool", "web")], &[("theirs", "172.21.0.2")]);
    let s = Settings {
        self_id: Some("me".into()),
        ..settings()
    };
    let d = derive(&[me, other], &HashSet::new(), &s);
    assert!(d.pools.is_empty());
    assert!(
        d.skipped[0].reason.contains("shares no network with wharf"),
        "{}",
        d.skipped[0].reason
    );
}

#[test]
fn wharf_on_the_host_network_falls_back_to_the_backends_only_network() {
    let me = container("me", 0, &[], &[("host", "")]);
    let other = container("a", 1, &[("wharf.pool", "web")], &[("theirs", "172.21.0.2")]);
    let s = Settings {
        self_id: Some("me".into()),
        ..settings()
    };
    let d = derive(&[me, other], &HashSet::new(), &s);
    assert_eq!(d.pools["web"].backends[0].addr.ip().to_string(), "172.21.0.2");
}
