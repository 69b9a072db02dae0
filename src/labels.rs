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
//!   The caller compares members with [`PoolOptions::differences`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Cookie name used by `sticky=cookie`.
pub const DEFAULT_STICKY_COOKIE: &str = "wharf_sticky";
/// Docker Compose's label naming a container's service: the default pool name.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Every key wharf reads under its prefix.
#[rustfmt::skip]
pub const KNOWN_LABELS: &[&str] = &[
    "enable", "pool", "port", "weight", "network", "host", "path", "strip_prefix", "balance",
    "sticky", "protocol", "health.path", "health.interval", "health.timeout", "health.rise",
    "health.fall", "slow_start", "retries",
];
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
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOptions {
    /// Empty = any host. Lowercased, deduplicated, sorted.
    pub hosts: Vec<HostPattern>,
    /// Starts with `/`, no trailing `/`; `/` normalises to `None`.
    pub path: Option<String>,
    pub strip_prefix: bool,
    pub balance: Balance,
    pub sticky: Option<Sticky>,
    pub protocol: Protocol,
    pub health: Option<HealthCheck>,
    pub slow_start: Duration,
    /// Further backends tried when one can't be reached, 0..=10.
    pub retries: u32,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            hosts: Vec::new(),
            path: None,
            strip_prefix: false,
            balance: Balance::RoundRobin,
            sticky: None,
            protocol: Protocol::Http,
            health: None,
            slow_start: Duration::ZERO,
            retries: 2,
        }
    }
}

impl PoolOptions {
    /// The full label keys (e.g. `"wharf.path"`) whose values differ, in the order of `labels.md`.
    pub fn differences(&self, other: &PoolOptions, prefix: &str) -> Vec<String> {
        let (a, b, prefix) = (self, other, prefix.trim_end_matches('.'));
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
        keys
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// The suffix with its leading dot: `*.example.com` is `Wildcard(".example.com")`.
    Wildcard(String),
}

impl HostPattern {
    /// `host` is already lowercased, without port. A wildcard needs at least one more label.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConn,
    IpHash,
    Random,
    P2c,
}

impl Balance {
    pub const ALL: &[Balance] = &[
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::IpHash,
        Balance::Random,
        Balance::P2c,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::IpHash => "ip_hash",
            Balance::Random => "random",
            Balance::P2c => "p2c",
        }
    }
}

impl FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        pick("algorithm", Balance::ALL, Balance::as_str, s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    pub cookie: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Http,
    H2c,
}

impl Protocol {
    pub const ALL: &[Protocol] = &[Protocol::Http, Protocol::H2c];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::H2c => "h2c",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        pick("protocol", Protocol::ALL, Protocol::as_str, s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

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
        let (label, value) = (format!("{}.{name}", self.prefix), value.to_string());
        self.errors.push(LabelError { label, value, reason });
    }

    /// `None` when the label is absent or does not parse (then an error is recorded).
    fn get<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.raw(name)?;
        let parsed = parse(value.trim());
        parsed.map_err(|reason| self.error(name, value, reason)).ok()
    }

    fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
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
    unknown.retain(|k| !KNOWN_LABELS.contains(k));
    unknown.sort_unstable();
    for key in unknown {
        let hint = did_you_mean(key, KNOWN_LABELS).map(|m| format!(" (did you mean {ns}{m}?)"));
        r.warn(format!("unknown label {ns}{key}{}", hint.unwrap_or_default()));
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
    let balance = r.get("balance", str::parse).unwrap_or_default();
    let sticky = r.get("sticky", parse_sticky).flatten();
    let protocol = r.get("protocol", str::parse).unwrap_or_default();
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
    let retries = r.get("retries", |v| int_in(v, 0, 10)).unwrap_or(2);

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

fn bool_value(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| "not a boolean (true/false, yes/no, on/off, 1/0)".into())
}

fn int_in(v: &str, lo: u32, hi: u32) -> Result<u32, String> {
    let n = v.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
    n.ok_or_else(|| format!("not a whole number from {lo} to {hi}"))
}

fn parse_port(v: &str) -> Result<u16, String> {
    let port = v.parse::<u16>().ok().filter(|&p| p != 0);
    port.ok_or_else(|| "not a port number (1-65535)".into())
}

fn pool_name(v: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    match v.chars().find(|&c| !ok(c)) {
        _ if v.is_empty() || v.len() > 64 => Err("a pool name has 1 to 64 characters".into()),
        Some(c) => Err(format!("invalid character {c:?} (allowed: A-Z a-z 0-9 _ . -)")),
        None => Ok(v.to_string()),
    }
}

fn parse_hosts(v: &str) -> Result<Vec<HostPattern>, String> {
    if v == "*" {
        return Ok(Vec::new());
    }
    let mut hosts = Vec::new();
    for item in v.split(',').map(|item| item.trim().to_ascii_lowercase()) {
        hosts.push(match item.strip_prefix("*.") {
            _ if item.is_empty() => return Err("empty host in the list (stray comma?)".into()),
            _ if item == "*" => return Err("\"*\" (any host) cannot be combined".into()),
            Some(suffix) => check_host(suffix, &item, HostPattern::Wildcard(format!(".{suffix}")))?,
            None => check_host(&item, &item, HostPattern::Exact(item.clone()))?,
        });
    }
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// `pattern` if `name` (`item` without any `*.`) is a valid host name.
fn check_host(name: &str, item: &str, pattern: HostPattern) -> Result<HostPattern, String> {
    if let Some((without, port)) = item.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !without.contains(':') {
            return Err(format!("hosts match without the port: use {without:?}"));
        }
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    match name.chars().find(|&c| !ok(c)) {
        Some('*') => Err(format!("{item:?}: '*' only as a leading \"*.\" (\"*.example.com\")")),
        Some(c) => Err(format!("invalid character {c:?} in host {item:?}")),
        None if name.len() > 253 || name.split('.').any(str::is_empty) => Err(format!("{item:?} is not a host name")),
        None => Ok(pattern),
    }
}

fn parse_path(v: &str) -> Result<Option<String>, String> {
    let path = check_path(v, "?#*")?.trim_end_matches('/');
    Ok(Some(path.to_string()).filter(|p| !p.is_empty()))
}

fn parse_health_path(v: &str) -> Result<String, String> {
    check_path(v, "#").map(str::to_string)
}

/// `v` if it starts with '/' and has only visible ASCII characters, none of `forbidden`.
fn check_path<'v>(v: &'v str, forbidden: &str) -> Result<&'v str, String> {
    match v.chars().find(|&c| !c.is_ascii_graphic() || forbidden.contains(c)) {
        _ if !v.starts_with('/') => Err("must start with '/'".into()),
        Some('*') => Err("a prefix needs no wildcard: \"/api\" serves \"/api/...\"".into()),
        Some(c @ ('?' | '#')) => Err(format!("a path cannot contain {c:?}")),
        Some(_) => Err("spaces, control and non-ASCII characters must be %-encoded".into()),
        None => Ok(v),
    }
}

fn parse_sticky(v: &str) -> Result<Option<Sticky>, String> {
    if parse_bool(v) == Some(false) {
        return Ok(None);
    }
    let cookie = match v.split_once(':') {
        None if v.eq_ignore_ascii_case("cookie") => DEFAULT_STICKY_COOKIE,
        Some((kind, name)) if kind.trim().eq_ignore_ascii_case("cookie") => name.trim(),
        _ => return Err("expected \"cookie\" or \"cookie:NAME\"".into()),
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if cookie.is_empty() || !cookie.chars().all(token) {
        return Err(format!("{cookie:?} is not a cookie name (A-Z a-z 0-9 !#$%&'*+-.^_`|~)"));
    }
    let cookie = cookie.to_string();
    Ok(Some(Sticky { cookie }))
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    match parse_duration(v)? {
        Duration::ZERO => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// The entry of `all` named `s` (case-insensitive), else an error listing the names.
fn pick<T: Copy>(what: &str, all: &[T], name: fn(T) -> &'static str, s: &str) -> Result<T, String> {
    let s = s.trim();
    if let Some(&found) = all.iter().find(|&&t| name(t).eq_ignore_ascii_case(s)) {
        return Ok(found);
    }
    let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
    let hint = did_you_mean(s, &names).map(|m| format!(" (did you mean {m}?)"));
    let (hint, names) = (hint.unwrap_or_default(), names.join(", "));
    Err(format!("unknown {what} {s:?}{hint}; one of {names}"))
}

/// Parses `250ms`, `5s`, `2m`, `1h`, `1.5s`, `1m30s`, `0`. Errors do not repeat the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "like 5s, 250ms, 1.5m or 1h";
    let s = s.trim();
    match s {
        "" => return Err(format!("empty duration; {EXAMPLES}")),
        "0" => return Ok(Duration::ZERO),
        _ if s.starts_with('-') => return Err("a duration cannot be negative".into()),
        _ => {}
    }
    let (mut rest, mut total) = (s, Duration::ZERO);
    while !rest.is_empty() {
        let is_num = |c: char| c.is_ascii_digit() || c == '.';
        let (num, tail) = rest.split_at(rest.find(|c| !is_num(c)).unwrap_or(rest.len()));
        let (unit, tail) = tail.split_at(tail.find(is_num).unwrap_or(tail.len()));
        rest = tail;
        let n: f64 = match num.parse() {
            Ok(n) => n,
            Err(_) if num.is_empty() => return Err(format!("expected a number, {EXAMPLES}")),
            Err(_) => return Err(format!("{num:?} is not a number")),
        };
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "" => return Err(format!("missing unit after {num}: ms, s, m or h")),
            _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
        };
        let part = Duration::try_from_secs_f64(secs).ok();
        let sum = part.and_then(|p| total.checked_add(p));
        total = sum.ok_or("duration is too large")?;
    }
    Ok(total)
}

/// The candidate closest to `input` (case-insensitive): edit distance ≤ 2 (a swap of two
/// neighbours counts 1), else one containing the other (3+ characters). Ties: first candidate.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    if input.is_empty() {
        return None;
    }
    let score = |candidate: &str| {
        let candidate = candidate.to_ascii_lowercase();
        let (short, long) = if input.len() <= candidate.len() {
            (&input, &candidate)
        } else {
            (&candidate, &input)
        };
        match edit_distance(&input, &candidate) {
            d if d <= 2 => Some(d),
            _ if short.len() >= 3 && long.contains(short.as_str()) => Some(3),
            _ => None,
        }
    };
    let scored = candidates.iter().filter_map(|&c| score(c).map(|s| (s, c)));
    scored.min_by_key(|&(s, _)| s).map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d: Vec<Vec<usize>> = (0..=a.len()).map(|i| vec![i; b.len() + 1]).collect();
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `true/false/1/0/yes/no/on/off`, case-insensitive, surrounding spaces ignored.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
