use super::*;
use crate::model::{BackendStatus, Balance};

fn settings() -> Settings {
    Settings {
        label_prefix: "wharf".into(),
        ..Settings::default()
    }
}

fn task(id: &str, service: &str, slot: u64, desired: &str, state: &str, nets: &[(&str, &str)]) -> TaskInfo {
    TaskInfo {
        id: id.into(),
        service_id: service.into(),
        slot: Some(slot),
        node_id: "node1".into(),
        desired: desired.into(),
        state: state.into(),
        created: 1_700_000_000 + slot as i64,
        labels: HashMap::new(),
        networks: nets.iter().map(|(n, ip)| (n.to_string(), ip.parse().ok())).collect(),
    }
}

fn service(id: &str, name: &str, labels: &[(&str, &str)]) -> (String, ServiceInfo) {
    (
        id.into(),
        ServiceInfo {
            id: id.into(),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ports: vec![],
        },
    )
}

fn web() -> HashMap<String, ServiceInfo> {
    [service(
        "svc1",
        "web",
        &[("wharf.enable", "true"), ("wharf.port", "8080")],
    )]
    .into_iter()
    .collect()
}

const NET: &[(&str, &str)] = &[("front", "10.0.1.5")];

#[test]
fn running_tasks_of_a_labelled_service_are_ready_backends_at_their_overlay_address() {
    let tasks = [
        task("t1", "svc1", 1, "running", "running", &[("front", "10.0.1.5")]),
        task("t2", "svc1", 2, "running", "running", &[("front", "10.0.1.6")]),
    ];
    let d = derive(&tasks, &web(), &HashSet::new(), &settings());
    let pool = &d.pools["web"];
    let got: Vec<(String, String, &str)> = pool
        .backends
        .iter()
        .map(|b| (b.container.clone(), b.addr.to_string(), b.status.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("web.1.t1".to_string(), "10.0.1.5:8080".to_string(), "ready"),
            ("web.2.t2".to_string(), "10.0.1.6:8080".to_string(), "ready"),
        ]
    );
    assert!(d.skipped.is_empty() && d.problems.is_empty(), "{d:?}");
}

#[test]
fn a_task_swarm_decided_to_stop_drains_while_it_still_runs_and_leaves_once_stopped() {
    for desired in ["shutdown", "remove"] {
        let t = task("t1", "svc1", 1, desired, "running", NET);
        assert_eq!(status(&t, &HashSet::new()), Some(BackendStatus::Draining), "{desired}");
        let d = derive(&[t], &web(), &HashSet::new(), &settings());
        assert_eq!(d.pools["web"].backends[0].status, BackendStatus::Draining);
    }
    for state in ["shutdown", "complete", "failed", "rejected", "orphaned", "remove"] {
        let t = task("t1", "svc1", 1, "shutdown", state, NET);
        assert_eq!(status(&t, &HashSet::new()), None, "{state}");
        assert!(derive(&[t], &web(), &HashSet::new(), &settings()).pools.is_empty());
    }
}

#[test]
fn a_task_not_yet_running_or_not_yet_healthy_waits() {
    for state in [
        "new",
        "pending",
        "assigned",
        "accepted",
        "preparing",
        "ready",
        "starting",
    ] {
        let t = task("t1", "svc1", 1, "running", state, NET);
        let d = derive(&[t], &web(), &HashSet::new(), &settings());
        let b = &d.pools["web"].backends[0];
        assert!(
            matches!(&b.status, BackendStatus::Waiting(why) if why.contains(state)),
            "{state}: {b:?}"
        );
    }
}

#[test]
fn a_stop_signal_seen_on_this_node_drains_a_running_task_before_the_poll() {
    let t = task("t1", "svc1", 1, "running", "running", NET);
    let draining: HashSet<String> = ["t1".to_string()].into();
    let d = derive(&[t], &web(), &draining, &settings());
    assert_eq!(d.pools["web"].backends[0].status, BackendStatus::Draining);
}

#[test]
fn service_labels_override_the_container_labels_and_the_service_name_is_the_default_pool() {
    let mut t = task("t1", "svc1", 1, "running", "running", NET);
    t.labels = [("wharf.port", "9000"), ("wharf.balance", "least_conn")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let services = [service(
        "svc1",
        "stack_api",
        &[("wharf.enable", "true"), ("wharf.port", "8080")],
    )]
    .into_iter()
    .collect();
    let d = derive(&[t], &services, &HashSet::new(), &settings());
    let pool = &d.pools["stack_api"];
    assert_eq!(pool.backends[0].addr.port(), 8080);
    assert_eq!(pool.opts.balance, Balance::LeastConn);
}

#[test]
fn unlabelled_services_and_tasks_of_unknown_services_are_left_out() {
    let services = [service("plain", "db", &[])].into_iter().collect();
    let tasks = [
        task("t1", "plain", 1, "running", "running", NET),
        task("t2", "unknown", 1, "running", "running", NET),
    ];
    let d = derive(&tasks, &services, &HashSet::new(), &settings());
    assert!(d.pools.is_empty() && d.skipped.is_empty(), "{d:?}");
}

#[test]
fn the_network_is_the_label_then_the_flag_then_the_one_wharfs_own_task_shares() {
    let nets = &[("front", "10.0.1.5"), ("back", "10.0.2.5")];
    let mut services = web();
    services.extend([service("me", "wharf", &[])]);
    let mut me = task("self", "me", 1, "running", "running", &[("front", "10.0.1.2")]);
    me.created = 0;
    let t = task("t1", "svc1", 1, "running", "running", nets);

    let mut s = settings();
    let d = derive(std::slice::from_ref(&t), &services, &HashSet::new(), &s);
    assert!(d.skipped[0].reason.contains("ambiguous"), "{d:?}");

    s.self_id = Some("self".into());
    let d = derive(&[me.clone(), t.clone()], &services, &HashSet::new(), &s);
    assert_eq!(d.pools["web"].backends[0].addr.to_string(), "10.0.1.5:8080");
    assert_eq!(d.pools.len(), 1, "wharf's own task is no backend");

    s.network = Some("back".into());
    let d = derive(&[me.clone(), t.clone()], &services, &HashSet::new(), &s);
    assert_eq!(d.pools["web"].backends[0].addr.to_string(), "10.0.2.5:8080");

    services
        .get_mut("svc1")
        .unwrap()
        .labels
        .insert("wharf.network".into(), "front".into());
    let d = derive(&[me, t], &services, &HashSet::new(), &s);
    assert_eq!(d.pools["web"].backends[0].addr.to_string(), "10.0.1.5:8080");
}

#[test]
fn bad_labels_skip_every_task_of_the_service_with_the_reason() {
    let services = [service(
        "svc1",
        "web",
        &[("wharf.enable", "true"), ("wharf.port", "http")],
    )]
    .into_iter()
    .collect();
    let d = derive(
        &[task("t1", "svc1", 1, "running", "running", NET)],
        &services,
        &HashSet::new(),
        &settings(),
    );
    assert!(d.pools.is_empty());
    assert_eq!(d.skipped[0].container, "web.1.t1");
    assert!(d.skipped[0].reason.contains("wharf.port"), "{:?}", d.skipped);
}

#[test]
fn global_tasks_are_named_by_node() {
    let mut t = task("t1", "svc1", 0, "running", "running", NET);
    t.slot = None;
    assert_eq!(task_name(&t, "agent"), "agent.node1.t1");
}

/// Trimmed from Docker 20.10's `GET /tasks` on a single-node swarm.
const TASKS_JSON: &str = r#"[{
  "ID": "q1bm6sx3wtemusmvvvd1p9kod",
  "Version": {"Index": 31},
  "CreatedAt": "2026-12-02T05:20:46.123456789Z",
  "UpdatedAt": "2026-12-02T05:20:48.0Z",
  "Labels": {},
  "Spec": {
    "ContainerSpec": {"Image": "wharf-it/demo:test", "Labels": {"wharf.port": "80"}, "Isolation": "default"},
    "Networks": [{"Target": "nw1"}],
    "ForceUpdate": 0
  },
  "ServiceID": "svc1",
  "Slot": 2,
  "NodeID": "node1",
  "Status": {"Timestamp": "2026-12-02T05:20:48.0Z", "State": "running", "Message": "started",
             "ContainerStatus": {"ContainerID": "abc", "PID": 42, "ExitCode": 0}, "PortStatus": {}},
  "DesiredState": "running",
  "NetworksAttachments": [
    {"Network": {"ID": "ing", "Spec": {"Name": "ingress", "Ingress": true}}, "Addresses": ["10.0.0.7/24"]},
    {"Network": {"ID": "nw1", "Spec": {"Name": "front", "Driver": "overlay"}}, "Addresses": ["10.0.1.9/24"]}
  ]
},
{"ID": "pending1", "ServiceID": "svc1", "DesiredState": "running", "Status": {"State": "pending"}}]"#;

#[test]
fn the_api_json_is_read_with_addresses_from_cidr_and_without_the_ingress_network() {
    let tasks = parse_tasks(TASKS_JSON).unwrap();
    assert_eq!(tasks.len(), 2);
    let t = &tasks[0];
    assert_eq!(
        (
            t.id.as_str(),
            t.service_id.as_str(),
            t.slot,
            t.desired.as_str(),
            t.state.as_str()
        ),
        ("q1bm6sx3wtemusmvvvd1p9kod", "svc1", Some(2), "running", "running")
    );
    assert_eq!(t.created, 1_796_188_846);
    assert_eq!(t.labels["wharf.port"], "80");
    let nets: Vec<(&str, String)> = t
        .networks
        .iter()
        .map(|(n, ip)| (n.as_str(), format!("{ip:?}")))
        .collect();
    assert_eq!(nets, [("front", "Some(10.0.1.9)".to_string())]);
    assert!(tasks[1].networks.is_empty() && tasks[1].state == "pending");
    assert_eq!(
        parse_task(&TASKS_JSON[1..TASKS_JSON.find("},\n{").unwrap() + 1]).unwrap(),
        tasks[0]
    );
    assert!(parse_tasks("{").is_err());
}

#[test]
fn services_json_gives_names_labels_and_tcp_target_ports() {
    let json = r#"[{"ID": "svc1", "Spec": {"Name": "web", "Labels": {"wharf.enable": "true"},
        "EndpointSpec": {"Mode": "dnsrr", "Ports": [
            {"Protocol": "udp", "TargetPort": 53},
            {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 18080, "PublishMode": "host"}]}}},
        {"ID": "svc2", "Spec": {"Name": "bare"}}]"#;
    let s = parse_services(json).unwrap();
    assert_eq!(s["svc1"].name, "web");
    assert_eq!(s["svc1"].ports, [8080]);
    assert_eq!(s["svc1"].labels["wharf.enable"], "true");
    assert!(s["svc2"].labels.is_empty() && s["svc2"].ports.is_empty());
}

#[test]
fn rfc3339_times_become_unix_seconds() {
    assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(unix_seconds("2000-03-01T00:00:00.5Z"), Some(951_868_800));
    assert_eq!(unix_seconds("2026-12-02T07:20:46+02:00"), Some(1_796_188_846));
    assert_eq!(unix_seconds("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
    assert_eq!(unix_seconds("yesterday"), None);
}

#[test]
fn cidr_addresses_lose_their_prefix_length() {
    assert_eq!(strip_cidr("10.0.1.5/24"), Some("10.0.1.5".parse().unwrap()));
    assert_eq!(strip_cidr("fd00::5/64"), Some("fd00::5".parse().unwrap()));
    assert_eq!(strip_cidr("10.0.1.5"), Some("10.0.1.5".parse().unwrap()));
    assert_eq!(strip_cidr("nonsense/24"), None);
}
