//! `/api/state` is a documented, versioned interface: its shape is pinned by
//! a snapshot (`docs/api-state.example.json`) and every field in it must be
//! described in `docs/api-state.md`. Pure: no Docker, no sockets.
//!
//! Changed the document on purpose? `WHARF_UPDATE_SNAPSHOTS=1 cargo test
//! --test state_schema` rewrites the snapshot; then document the new fields
//! (and bump `admin::STATE_SCHEMA` if a field was removed or changed meaning).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use wharf::admin::{state_json, STATE_SCHEMA};
use wharf::model::{BackendStatus, Desired, DesiredBackend, DesiredPool, PoolOptions, Skipped};
use wharf::provider::Discovery;
use wharf::routing::{Registry, RoutingTable};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A state with one of everything: a ready and a starting backend, a skipped
/// container, a problem, a warning, a discovery event.
fn sample() -> Value {
    let backend = |id: &str, port: u16, status| DesiredBackend {
        id: id.into(),
        container: format!("shop-{id}"),
        addr: format!("172.18.0.{port}:8080").parse().unwrap(),
        weight: 1,
        status,
    };
    let mut pools = BTreeMap::new();
    pools.insert(
        "shop".to_string(),
        DesiredPool {
            opts: PoolOptions::default(),
            backends: vec![
                backend("a1", 2, BackendStatus::Ready),
                backend(
                    "b2",
                    3,
                    BackendStatus::Waiting("starting: Docker health check not passed yet".into()),
                ),
            ],
        },
    );
    let desired = Desired {
        pools,
        skipped: vec![Skipped {
            id: "c3".into(),
            container: "broken".into(),
            reason: "invalid label wharf.port=\"http\": not a port number".into(),
        }],
        problems: vec!["route conflict: an example".into()],
        warnings: vec!["an example warning".into()],
    };
    let table = RoutingTable::build(desired, &Registry::default(), None);
    let discovery = Discovery::default();
    discovery
        .control
        .pending("start", "/shop-a1", Some(1_700_000_000_000_000_000));
    discovery.control.swapped();
    let mut v = state_json(&table, &|_| 0, &discovery, true);
    // Values that change from run to run; the shape is what is pinned.
    v["version"] = "X.Y.Z".into();
    v["events"][0]["swap_ms"] = 12.5.into();
    v
}

/// Every path of `v`, arrays as `[]`: `pools[].backends[].state`.
fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.iter().find(|x| x.is_object()) {
                paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn api_state_matches_the_committed_snapshot() {
    let got = serde_json::to_string_pretty(&sample()).unwrap() + "\n";
    let file = root().join("docs/api-state.example.json");
    if std::env::var_os("WHARF_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&file, &got).unwrap();
    }
    let want = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        got, want,
        "/api/state changed shape; if on purpose, rerun with WHARF_UPDATE_SNAPSHOTS=1 and update docs/api-state.md"
    );
    assert_eq!(sample()["schema"], STATE_SCHEMA);
}

#[test]
fn every_field_of_api_state_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/api-state.md")).unwrap();
    let mut all = Vec::new();
    paths(&sample(), "", &mut all);
    let missing: Vec<&String> = all.iter().filter(|p| !doc.contains(&format!("`{p}`"))).collect();
    assert!(missing.is_empty(), "fields missing from docs/api-state.md: {missing:?}");
}
