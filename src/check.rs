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
use crate::config::Config;
use crate::model::Desired;
use crate::provider::docker::{containers, DockerProvider};
use crate::provider::statics::add_static;
use crate::routing::{Registry, RoutingTable};

/// Returns the report (a table, or with `json` the `/api/state` document
/// without live counters) and whether it found problems.
pub async fn check(cfg: &Config, json: bool) -> Result<(String, bool), StartError> {
    let mut desired = Desired::default();
    if cfg.provider == crate::config::Provider::Docker {
        let docker = DockerProvider::connect(settings(cfg)).await?;
        let list = docker.client().list().await?;
        desired = containers::derive(&list, &Default::default(), docker.settings());
    }
    add_static(&mut desired, &cfg.static_pools);
    let table = RoutingTable::build(desired, &Registry::default(), None);
    let (report, bad) = render(&table, &cfg.label_prefix);
    if json {
        return Ok((render_json(&table, bad), bad));
    }
    Ok((report, bad))
}

/// `wharf check --json`: the `/api/state` document (docs/api-state.md) for
/// the table just built, plus `"ok"`; counters are all zero.
pub fn render_json(table: &RoutingTable, bad: bool) -> String {
    let mut v = crate::admin::state_json(table, &|_| 0, &Default::default(), true);
    v["ok"] = (!bad).into();
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
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
