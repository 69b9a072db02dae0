//! Container labels → what wharf does with the container.
//!
//! Docker labels are wharf's only per-backend configuration. [`parse`] turns the labels of
//! one container into a [`LabelOutcome`]: not a member, a member with its [`ServiceSpec`], or
//! invalid with every [`LabelError`] found. The user-facing contract is `labels.md`.
//!
//! Invariants:
//! - Pure: no I/O, no logging, no clock. The same labels and context give the same outcome,
//!   with errors and warnings in a deterministic order. Never panics, whatever the input.
//! - Only keys under `<prefix>.` are read, plus `com.docker.compose.service` for the default
//!   pool name. Unknown `<prefix>.` keys are warnings ("did you mean"), never errors.
//! - Values are trimmed before parsing; errors quote the value as given.
//! - [`PoolOptions`] is normalised (hosts lowercased, deduplicated and sorted; path without a
//!   trailing `/`, `/` meaning none), so members agree exactly when their options are equal.
//!   The caller compares members with [`differences`].

pub mod policy;
mod values;

use std::collections::HashMap;
use std::time::Duration;

use crate::model::{HealthCheck, PoolOptions, MAX_RETRIES};
use crate::text::{did_you_mean, parse_duration};
use values::*;

/// Docker Compose's label naming a container's service: the default pool name.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Every key wharf reads under its prefix.
#[rustfmt::skip]
pub const KNOWN_LABELS: &[&str] = &[
    "enable", "pool", "port", "weight", "network", "host", "path", "strip_prefix", "balance",
    "sticky", "protocol", "health.path", "health.interval", "health.timeout", "health.rise",
    "health.fall", "slow_start", "retries", "max_conns", "tls", "https_redirect", "hsts",
    "connect",
];
/// Unknown `<prefix>.*` labels named one by one per container; the rest are counted.
const MAX_UNKNOWN_NAMED: usize = 5;
#[rustfmt::skip]
const HEALTH_TIMING: &[&str] = &["health.interval", "health.timeout", "health.rise", "health.fall"];

/// What [`parse`] needs to know about the container besides its labels.
pub struct LabelContext<'a> {
    /// Label namespace, e.g. `"wharf"` (keys are `wharf.pool`, ...).
    pub prefix: &'a str,
    /// `--exposed-by-default`: a container exposing exactly one port joins without labels.
    pub exposed_by_default: bool,
    /// Container name without the leading `/`.
    pub container_name: &'a str,
    /// TCP ports the container exposes, sorted and deduplicated.
    pub exposed_ports: &'a [u16],
}

// Made once per container per listing, moved once: the size is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// The container does not ask to join (no membership label, or `enable=false`).
    NotMember,
    Member(ServiceSpec),
    /// The container asks to join but some labels do not parse: it is excluded.
    Invalid(Vec<LabelError>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelOutcome {
    pub parsed: Parsed,
    /// Unknown `<prefix>.*` keys, ignored labels, questionable defaults. Never fatal.
    pub warnings: Vec<String>,
}

/// One container's place in one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub pool: String,
    pub port: u16,
    /// Relative share, 0..=10000; 0 drains (no new requests).
    pub weight: u32,
    /// `<prefix>.network`; `None` leaves the choice to the caller's network rule.
    pub network: Option<String>,
    pub pool_opts: PoolOptions,
}

/// Settings that must agree across all members of a pool.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{label}={value:?}: {reason}")]
pub struct LabelError {
    pub label: String,
    pub value: String,
    pub reason: String,
}

/// Reads `<prefix>.*` labels, collecting errors and warnings as it goes.
struct Reader<'a> {
    labels: &'a HashMap<String, String>,
    prefix: &'a str,
    errors: Vec<LabelError>,
    warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        let value = self.labels.get(&format!("{}.{name}", self.prefix));
        value.map(String::as_str)
    }

    fn error(&mut self, name: &str, value: &str, reason: String) {
        // Label values are anyone's input: quoted in logs, `/api/state` and
        // `wharf check`, so cut to a short prefix (a 60 KiB host once made a 123 KB log line).
        let (label, value) = (format!("{}.{name}", self.prefix), crate::text::clip(value, 80));
        let reason = crate::text::clip(&reason, 200);
        self.errors.push(LabelError { label, value, reason });
    }

    /// `None` when the label is absent or does not parse (then an error is recorded).
    fn get<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.raw(name)?;
        let parsed = parse(value.trim());
        parsed.map_err(|reason| self.error(name, value, reason)).ok()
    }

    fn warn(&mut self, warning: String) {
        self.warnings.push(crate::text::clip(&warning, 200));
    }
}

/// Parses one container's labels. See the module docs and `labels.md`.
pub fn parse(labels: &HashMap<String, String>, ctx: &LabelContext) -> LabelOutcome {
    let prefix = ctx.prefix.trim_end_matches('.');
    let (errors, warnings) = (Vec::new(), Vec::new());
    let mut r = Reader {
        labels,
        prefix,
        errors,
        warnings,
    };
    let ns = format!("{prefix}.");
    let mut unknown: Vec<&str> = labels.keys().filter_map(|k| k.strip_prefix(&ns)).collect();
    unknown.retain(|k| !KNOWN_LABELS.contains(k) && !policy::POLICY_LABELS.contains(k) && !policy::is_dynamic(k));
    unknown.sort_unstable();
    // A few named, the rest counted: a container with thousands of stray
    // labels must not cost thousands of suggestions and log lines per listing.
    for key in unknown.iter().take(MAX_UNKNOWN_NAMED) {
        let known: Vec<&str> = KNOWN_LABELS.iter().chain(policy::POLICY_LABELS).copied().collect();
        let hint = did_you_mean(key, &known).map(|m| format!(" (did you mean {ns}{m}?)"));
        r.warn(format!("unknown label {ns}{key}{}", hint.unwrap_or_default()));
    }
    if unknown.len() > MAX_UNKNOWN_NAMED {
        let more = unknown.len() - MAX_UNKNOWN_NAMED;
        r.warn(format!("{more} more unknown {ns}* labels"));
    }

    let enable = r.get("enable", bool_value);
    let by_default = ctx.exposed_by_default && ctx.exposed_ports.len() == 1;
    let joins = enable.is_some() || !r.errors.is_empty() || r.raw("pool").is_some() || by_default;
    if enable == Some(false) || !joins {
        if !joins && KNOWN_LABELS.iter().any(|k| r.raw(k).is_some()) {
            r.warn(format!(
                "{prefix}.* labels ignored: neither {prefix}.enable=true nor {prefix}.pool"
            ));
        }
        let warnings = r.warnings;
        return LabelOutcome {
            parsed: Parsed::NotMember,
            warnings,
        };
    }

    let pool = match r.raw("pool") {
        Some(_) => r.get("pool", pool_name),
        None => {
            let service = labels.get(COMPOSE_SERVICE_LABEL).map(|s| s.trim());
            let service = service.filter(|s| !s.is_empty());
            let name = service.unwrap_or(ctx.container_name.trim_start_matches('/'));
            let from = if service.is_some() {
                "compose service"
            } else {
                "container name"
            };
            let reason = |e| format!("the {from} is not a pool name: {e}; set {prefix}.pool");
            pool_name(name).map_err(|e| r.error("pool", name, reason(e))).ok()
        }
    };
    let port = r.get("port", parse_port).unwrap_or(match ctx.exposed_ports {
        [only] => *only,
        _ => 80,
    });
    let ports = ctx.exposed_ports;
    if r.raw("port").is_none() && ports.len() > 1 && !ports.contains(&80) {
        r.warn(format!("exposes ports {ports:?} but has no {prefix}.port: using 80"));
    }
    let weight = r.get("weight", |v| int_in(v, 0, 10_000)).unwrap_or(1);
    let network = r.get("network", |v| match v {
        "" => Err("empty network name".to_string()),
        _ => Ok(v.to_string()),
    });

    let hosts = r.get("host", parse_hosts).unwrap_or_default();
    let path = r.get("path", parse_path).flatten();
    let strip_prefix = r.get("strip_prefix", bool_value).unwrap_or(false);
    if strip_prefix && path.is_none() {
        r.warn(format!("{prefix}.strip_prefix has no effect without {prefix}.path"));
    }
    let balance = r.get("balance", balance).unwrap_or_default();
    let sticky = r.get("sticky", parse_sticky).flatten();
    let protocol = r.get("protocol", protocol).unwrap_or_default();
    let health = match r.raw("health.path") {
        Some(_) => {
            let path = r.get("health.path", parse_health_path);
            let interval = r.get("health.interval", positive_duration);
            let timeout = r.get("health.timeout", positive_duration);
            let rise = r.get("health.rise", |v| int_in(v, 1, 100)).unwrap_or(2);
            let fall = r.get("health.fall", |v| int_in(v, 1, 100)).unwrap_or(3);
            path.map(|path| HealthCheck {
                path,
                interval: interval.unwrap_or(Duration::from_secs(5)),
                timeout: timeout.unwrap_or(Duration::from_secs(2)),
                rise,
                fall,
            })
        }
        None => {
            let ignored = HEALTH_TIMING.iter().filter(|name| r.raw(name).is_some());
            for name in ignored.collect::<Vec<_>>() {
                r.warn(format!("{prefix}.{name} ignored without {prefix}.health.path"));
            }
            None
        }
    };
    let slow_start = r.get("slow_start", parse_duration).unwrap_or_default();
    let retries = r.get("retries", |v| int_in(v, 0, MAX_RETRIES)).unwrap_or(2);
    let max_conns = r.get("max_conns", |v| int_in(v, 1, 1_000_000)).unwrap_or(0);
    let tls = r.get("tls", tls_mode);
    let https_redirect = r.get("https_redirect", bool_value).unwrap_or(false);
    let hsts = r.get("hsts", hsts_max_age);
    let connect = r.get("connect", bool_value).unwrap_or(false);
    if https_redirect && tls == Some(crate::model::TlsMode::Off) {
        r.warn(format!("{prefix}.https_redirect=true with {prefix}.tls=off: the redirect target needs a certificate from somewhere"));
    }
    let policies = policy::parse(&mut r);

    let parsed = match pool {
        Some(pool) if r.errors.is_empty() => {
            let pool_opts = PoolOptions {
                hosts,
                path,
                strip_prefix,
                balance,
                sticky,
                protocol,
                health,
                slow_start,
                retries,
                max_conns,
                tls,
                https_redirect,
                hsts,
                connect,
                policies: Box::new(policies),
            };
            Parsed::Member(ServiceSpec {
                pool,
                port,
                weight,
                network,
                pool_opts,
            })
        }
        _ => Parsed::Invalid(r.errors),
    };
    let warnings = r.warnings;
    LabelOutcome { parsed, warnings }
}

/// The pool options of a `--static` pool from its `--static-label`s (full
/// keys, prefix `wharf`), read as a container's labels would be.
pub fn static_options(labels: &[(String, String)]) -> Result<PoolOptions, String> {
    let mut map: HashMap<String, String> = labels.iter().cloned().collect();
    map.insert("wharf.enable".into(), "true".into());
    let ctx = LabelContext {
        prefix: "wharf",
        exposed_by_default: false,
        container_name: "static",
        exposed_ports: &[],
    };
    match parse(&map, &ctx).parsed {
        Parsed::Member(spec) => Ok(spec.pool_opts),
        Parsed::Invalid(errors) => Err(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        Parsed::NotMember => Err("not a member".into()),
    }
}

/// The full label keys (e.g. `"wharf.path"`) whose values differ, in the order of `labels.md`.
pub fn differences(a: &PoolOptions, b: &PoolOptions, prefix: &str) -> Vec<String> {
    let prefix = prefix.trim_end_matches('.');
    let mut keys = Vec::new();
    let mut check = |differs: bool, key: &str| {
        if differs {
            keys.push(format!("{prefix}.{key}"));
        }
    };
    check(a.hosts != b.hosts, "host");
    check(a.path != b.path, "path");
    check(a.strip_prefix != b.strip_prefix, "strip_prefix");
    check(a.balance != b.balance, "balance");
    check(a.sticky != b.sticky, "sticky");
    check(a.protocol != b.protocol, "protocol");
    match (&a.health, &b.health) {
        (Some(x), Some(y)) => {
            check(x.path != y.path, "health.path");
            check(x.interval != y.interval, "health.interval");
            check(x.timeout != y.timeout, "health.timeout");
            check(x.rise != y.rise, "health.rise");
            check(x.fall != y.fall, "health.fall");
        }
        (x, y) => check(x.is_some() != y.is_some(), "health.path"),
    }
    check(a.slow_start != b.slow_start, "slow_start");
    check(a.retries != b.retries, "retries");
    check(a.max_conns != b.max_conns, "max_conns");
    check(a.tls != b.tls, "tls");
    check(a.https_redirect != b.https_redirect, "https_redirect");
    check(a.hsts != b.hsts, "hsts");
    check(a.connect != b.connect, "connect");
    policy::differences(&a.policies, &b.policies, check);
    keys
}

#[cfg(test)]
mod tests;
