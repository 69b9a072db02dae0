//! Parsers for single label values: each takes the trimmed value and returns
//! the typed value or a reason (the caller adds the label name and the value).

use std::time::Duration;

use crate::model::{Balance, HostPattern, Protocol, Sticky, TlsMode, DEFAULT_STICKY_COOKIE};
use crate::text::{parse_bool, parse_duration, pick};

pub(super) fn balance(v: &str) -> Result<Balance, String> {
    pick("algorithm", Balance::ALL, Balance::as_str, v)
}

pub(super) fn protocol(v: &str) -> Result<Protocol, String> {
    pick("protocol", Protocol::ALL, Protocol::as_str, v)
}

pub(super) fn tls_mode(v: &str) -> Result<TlsMode, String> {
    pick("TLS mode", TlsMode::ALL, TlsMode::as_str, v)
}

/// HSTS max-age: whole seconds (`31536000`), days (`365d`) or a duration
/// (`8760h`); at least one second (`0` would tell browsers to forget HSTS:
/// leave the label off instead).
pub(super) fn hsts_max_age(v: &str) -> Result<Duration, String> {
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Some(days) = v.strip_suffix('d').and_then(|d| d.trim().parse::<u64>().ok()) {
        Duration::from_secs(days.saturating_mul(86_400))
    } else {
        parse_duration(v).map_err(|e| format!("{e}; or whole seconds (31536000) or days (365d)"))?
    };
    if d < Duration::from_secs(1) {
        return Err("max-age must be at least 1s (remove the label to send no HSTS header)".into());
    }
    Ok(d)
}

pub(super) fn bool_value(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| "not a boolean (true/false, yes/no, on/off, 1/0)".into())
}

pub(super) fn int_in(v: &str, lo: u32, hi: u32) -> Result<u32, String> {
    let n = v.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
    n.ok_or_else(|| format!("not a whole number from {lo} to {hi}"))
}

pub(super) fn parse_port(v: &str) -> Result<u16, String> {
    let port = v.parse::<u16>().ok().filter(|&p| p != 0);
    port.ok_or_else(|| "not a port number (1-65535)".into())
}

pub(super) fn pool_name(v: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    match v.chars().find(|&c| !ok(c)) {
        _ if v.is_empty() || v.len() > 64 => Err("a pool name has 1 to 64 characters".into()),
        Some(c) => Err(format!("invalid character {c:?} (allowed: A-Z a-z 0-9 _ . -)")),
        None => Ok(v.to_string()),
    }
}

pub(super) fn parse_hosts(v: &str) -> Result<Vec<HostPattern>, String> {
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
pub(super) fn check_host(name: &str, item: &str, pattern: HostPattern) -> Result<HostPattern, String> {
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

pub(super) fn parse_path(v: &str) -> Result<Option<String>, String> {
    let path = check_path(v, "?#*")?.trim_end_matches('/');
    Ok(Some(path.to_string()).filter(|p| !p.is_empty()))
}

pub(super) fn parse_health_path(v: &str) -> Result<String, String> {
    check_path(v, "#").map(str::to_string)
}

/// `v` if it starts with '/' and has only visible ASCII characters, none of `forbidden`.
pub(super) fn check_path<'v>(v: &'v str, forbidden: &str) -> Result<&'v str, String> {
    match v.chars().find(|&c| !c.is_ascii_graphic() || forbidden.contains(c)) {
        _ if !v.starts_with('/') => Err("must start with '/'".into()),
        Some('*') => Err("a prefix needs no wildcard: \"/api\" serves \"/api/...\"".into()),
        Some(c @ ('?' | '#')) => Err(format!("a path cannot contain {c:?}")),
        Some(_) => Err("spaces, control and non-ASCII characters must be %-encoded".into()),
        None => Ok(v),
    }
}

pub(super) fn parse_sticky(v: &str) -> Result<Option<Sticky>, String> {
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

pub(super) fn positive_duration(v: &str) -> Result<Duration, String> {
    match parse_duration(v)? {
        Duration::ZERO => Err("must be more than 0".into()),
        d => Ok(d),
    }
}
