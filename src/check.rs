//! `wharf check` and `wharf healthcheck`: one-shot commands.
//!
//! `check` does what the watcher does once — connect, list, derive — and
//! prints the result for a person, exiting 1 when any container was skipped
//! or any label has a problem, so it can gate a deploy script.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::app::{settings, StartError};
use crate::config::{Config, Provider as ProviderKind};
use crate::model::Desired;
use crate::model::{HostPattern, TlsMode};
use crate::provider::docker::{containers, DockerProvider};
use crate::provider::statics::add_static;
use crate::provider::swarm::{tasks, SwarmError, SwarmProvider};
use crate::routing::{Registry, RoutingTable};
use crate::tls::files::DirWatch;
use crate::tls::CertStore;

/// Returns the report (a table, or with `json` the `/api/state` document
/// without live counters) and whether it found problems.
pub async fn check(cfg: &Config, json: bool) -> Result<(String, bool), StartError> {
    let mut desired = Desired::default();
    match cfg.provider {
        ProviderKind::Docker => {
            let docker = DockerProvider::connect(settings(cfg)).await?;
            let list = docker.client().list().await?;
            desired = containers::derive(&list, &Default::default(), docker.settings());
        }
        ProviderKind::Swarm => desired = swarm_desired(cfg).await?,
        ProviderKind::None => {}
    }
    add_static(&mut desired, &cfg.static_pools);
    let mut table = RoutingTable::build(desired, &Registry::default(), None);
    // TLS is on for `check` when a certificate source is configured: the
    // image's default `--tls-listen` alone does not make every host a warning.
    if cfg.tls_listen.is_some() && (cfg.tls_dir.is_some() || cfg.acme.is_some()) {
        let store = CertStore::new();
        let mut dir_warnings = Vec::new();
        if let Some(dir) = &cfg.tls_dir {
            let mut watch = DirWatch::new(dir);
            match watch.scan_and_publish(&store) {
                Ok(scan) => dir_warnings.extend(
                    scan.errors
                        .iter()
                        .map(|(file, e)| format!("--tls-dir: {}: {e}", file.display())),
                ),
                Err(e) => dir_warnings.push(format!("--tls-dir {}: {e}", dir.display())),
            }
        }
        let tls = tls_warnings(&table, &store, cfg.acme.is_some());
        table.desired.warnings.extend(dir_warnings.into_iter().chain(tls));
    }
    let (report, bad) = render(&table, &cfg.label_prefix);
    if json {
        return Ok((render_json(&table, bad), bad));
    }
    Ok((report, bad))
}

/// The tasks of a swarm, once, as the Swarm provider's first poll sees them.
async fn swarm_desired(cfg: &Config) -> Result<Desired, StartError> {
    let swarm = SwarmProvider::connect(settings(cfg)).await?;
    let api = |message| SwarmError::Api {
        host: crate::provider::docker::client::docker_host(),
        message,
    };
    let live = swarm.client().tasks().await.map_err(api)?;
    let services = swarm.client().services().await.map_err(api)?;
    Ok(tasks::derive(&live, &services, &Default::default(), swarm.settings()))
}

/// `wharf check --json`: the `/api/state` document (docs/api-state.md) for
/// the table just built, plus `"ok"`; counters are all zero.
pub fn render_json(table: &RoutingTable, bad: bool) -> String {
    let mut v = crate::admin::state_json(table, &|_| 0, &Default::default(), true);
    v["ok"] = (!bad).into();
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// With TLS on: every host (of a pool whose `wharf.tls` is not `off`) that
/// no certificate source covers, with what to do about it.
pub fn tls_warnings(table: &RoutingTable, store: &CertStore, acme_configured: bool) -> Vec<String> {
    let mut out = Vec::new();
    for h in table.hosts_tls(acme_configured) {
        let (host, pool) = (h.host.to_string(), &h.pool);
        let wildcard = matches!(h.host, HostPattern::Wildcard(_));
        let file = store.covers(&host);
        match h.mode {
            TlsMode::Off => {}
            _ if file => {}
            TlsMode::Acme if acme_configured && wildcard => out.push(format!(
                "host {host} (pool {pool}): a wildcard needs an ACME DNS-01 challenge, which wharf does not do; put a certificate for it in --tls-dir"
            )),
            TlsMode::Acme if acme_configured => {}
            TlsMode::Acme => out.push(format!(
                "host {host} (pool {pool}): wharf.tls=acme but ACME is not configured, and no --tls-dir certificate covers it; HTTPS handshakes for it fail"
            )),
            TlsMode::File => out.push(format!(
                "host {host} (pool {pool}): no certificate in --tls-dir covers it; HTTPS handshakes for it fail (set wharf.tls=off if it is served over HTTP only)"
            )),
        }
    }
    out
}

/// The human-readable report for a table.
pub fn render(table: &RoutingTable, prefix: &str) -> (String, bool) {
    let mut out = String::new();
    let d = &table.desired;
    if table.pools.is_empty() {
        let _ = writeln!(
            out,
            "no pools: no running container carries {0}.enable=true or {0}.pool=NAME",
            prefix
        );
    } else {
        let rows: Vec<[String; 6]> = table
            .pools
            .iter()
            .flat_map(|p| {
                let route = format!(
                    "{}{}{}",
                    if p.opts.hosts.is_empty() {
                        "*".to_string()
                    } else {
                        p.opts
                            .hosts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                    p.opts.path.as_deref().unwrap_or("/"),
                    if p.opts.strip_prefix { " (strip)" } else { "" }
                );
                p.backends.iter().map(move |b| {
                    [
                        p.name.clone(),
                        route.clone(),
                        b.addr.to_string(),
                        b.container.clone(),
                        b.status.as_str().to_string(),
                        b.weight.to_string(),
                    ]
                })
            })
            .collect();
        let head = ["POOL", "ROUTE", "BACKEND", "CONTAINER", "STATE", "WEIGHT"];
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: &[&str]| {
            let mut l = String::new();
            for (c, w) in cells.iter().zip(width) {
                let _ = write!(l, "{c:<w$}  ");
            }
            l.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&head));
        for r in &rows {
            out.push_str(&line(&r.each_ref().map(String::as_str)));
        }
    }
    let mut section = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "\n{title}:");
            for i in items {
                let _ = writeln!(out, "  - {i}");
            }
        }
    };
    let skipped: Vec<String> = d
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.container, s.reason))
        .collect();
    let mut problems = d.problems.clone();
    problems.extend(table.route_problems.iter().cloned());
    let bad = !skipped.is_empty() || !problems.is_empty() || !d.warnings.is_empty();
    section("skipped containers", skipped);
    section("problems", problems);
    section("warnings", d.warnings.clone());
    if !bad {
        out.push_str("\nno problems\n");
    }
    (out, bad)
}

/// Probe the admin `/healthz` (the image has no shell or curl for a HEALTHCHECK).
pub fn healthcheck(admin: SocketAddr) -> Result<(), String> {
    let addr = if admin.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], admin.port()))
    } else {
        admin
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf[..n]);
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "{addr}/healthz: {}",
            head.lines().next().unwrap_or("no answer")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Desired, DesiredPool, PoolOptions};
    use crate::tls::testing::TestCa;
    use crate::tls::{certificate_from_pem, CertSource};

    fn pool(hosts: &[HostPattern], tls: Option<TlsMode>) -> DesiredPool {
        DesiredPool {
            opts: PoolOptions {
                hosts: hosts.to_vec(),
                tls,
                ..PoolOptions::default()
            },
            backends: vec![],
        }
    }

    #[test]
    fn check_warns_about_each_host_without_a_certificate_source_unless_tls_is_off() {
        let exact = |h: &str| HostPattern::Exact(h.into());
        let mut d = Desired::default();
        d.pools
            .insert("covered".into(), pool(&[exact("a.test"), exact("x.w.test")], None));
        d.pools.insert("bare".into(), pool(&[exact("b.test")], None));
        d.pools
            .insert("plain".into(), pool(&[exact("c.test")], Some(TlsMode::Off)));
        d.pools
            .insert("auto".into(), pool(&[exact("d.test")], Some(TlsMode::Acme)));
        d.pools
            .insert("wild".into(), pool(&[HostPattern::Wildcard(".e.test".into())], None));
        d.pools.insert("any".into(), pool(&[], None));
        let table = RoutingTable::build(d, &Registry::default(), None);
        let ca = TestCa::new("ca");
        let leaf = ca.leaf(&["a.test", "*.w.test"]);
        let store = CertStore::new();
        let cert = certificate_from_pem(leaf.chain.as_bytes(), leaf.key.as_bytes()).unwrap();
        store.publish(CertSource::Files, vec![cert]);

        let without_acme = tls_warnings(&table, &store, false);
        let hosts: Vec<&str> = without_acme.iter().map(|w| w.split(' ').nth(1).unwrap()).collect();
        assert_eq!(hosts, ["b.test", "d.test", "*.e.test"], "{without_acme:#?}");
        assert!(without_acme[1].contains("ACME is not configured"));

        let with_acme = tls_warnings(&table, &store, true);
        assert_eq!(with_acme.len(), 1, "{with_acme:#?}");
        assert!(with_acme[0].starts_with("host *.e.test (pool wild): a wildcard needs an ACME DNS-01"));
    }
}
