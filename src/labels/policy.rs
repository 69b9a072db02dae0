//! Policy labels → [`Policies`]: `allow`/`deny`, `auth.*`, `ratelimit*`,
//! `compress`, `headers.request.*`/`headers.response.*`, `security_headers`.
//!
//! Same promises as the other labels: pure, a value that does not parse is a
//! [`super::LabelError`] that excludes this container only, and a password is
//! never accepted in plain text (only a bcrypt or argon2 hash).

use std::time::Duration;

use super::values::bool_value;
use super::Reader;
use crate::model::cidr::Cidr;
use crate::model::{BasicAuth, Encoding, Policies, RateKey, RateLimit};
use crate::text::parse_duration;

/// Policy keys under the prefix (the `headers.*` families are matched by [`is_dynamic`]).
#[rustfmt::skip]
pub const POLICY_LABELS: &[&str] = &[
    "allow", "deny", "auth.basic", "auth.basic_file", "auth.forward", "auth.realm", "ratelimit",
    "ratelimit.burst", "ratelimit.by", "compress", "security_headers",
];
const REQUEST_HEADERS: &str = "headers.request.";
const RESPONSE_HEADERS: &str = "headers.response.";
/// Largest `RATE` and `burst`.
const MAX_RATE: u32 = 1_000_000;

/// `headers.request.NAME` / `headers.response.NAME`: known, whatever NAME is.
pub fn is_dynamic(key: &str) -> bool {
    key.starts_with(REQUEST_HEADERS) || key.starts_with(RESPONSE_HEADERS)
}

pub(super) fn parse(r: &mut Reader) -> Policies {
    let prefix = r.prefix;
    let allow = r.get("allow", cidrs).unwrap_or_default();
    let deny = r.get("deny", cidrs).unwrap_or_default();

    let users = r.get("auth.basic", basic_users);
    let file = r.get("auth.basic_file", |v| match v {
        _ if v.starts_with('/') => Ok(v.to_string()),
        _ => Err("an absolute path to a file of user:hash lines, mounted into wharf's container".into()),
    });
    let forward = r.get("auth.forward", bool_value);
    let realm = r.get("auth.realm", |v| {
        match v.chars().find(|c| *c == '"' || *c == '\\' || c.is_control()) {
            Some(c) => Err(format!("a realm cannot contain {c:?}")),
            None if v.is_empty() => Err("empty realm".into()),
            None => Ok(v.to_string()),
        }
    });
    let auth = if users.is_some() || file.is_some() {
        Some(BasicAuth {
            users: users.unwrap_or_default(),
            file,
            forward: forward.unwrap_or(false),
            realm,
        })
    } else {
        for name in ["auth.forward", "auth.realm"] {
            if r.raw(name).is_some() && r.raw("auth.basic").is_none() && r.raw("auth.basic_file").is_none() {
                r.warn(format!(
                    "{prefix}.{name} ignored without {prefix}.auth.basic or {prefix}.auth.basic_file"
                ));
            }
        }
        None
    };

    let ratelimit = match r.raw("ratelimit") {
        Some(_) => {
            let rate = r.get("ratelimit", rate_per_period);
            let burst = r.get("ratelimit.burst", |v| int_1_to(v, MAX_RATE));
            let by = r.get("ratelimit.by", rate_key).unwrap_or(RateKey::Client);
            rate.map(|(rate, period)| RateLimit {
                rate,
                period,
                burst: burst.unwrap_or(rate),
                by,
            })
        }
        None => {
            for name in ["ratelimit.burst", "ratelimit.by"] {
                if r.raw(name).is_some() {
                    r.warn(format!("{prefix}.{name} ignored without {prefix}.ratelimit"));
                }
            }
            None
        }
    };
    let compress = r.get("compress", encodings).unwrap_or_default();
    let security_headers = r.get("security_headers", bool_value).unwrap_or(false);
    let request_headers = headers(r, REQUEST_HEADERS);
    let response_headers = headers(r, RESPONSE_HEADERS);
    Policies {
        allow,
        deny,
        auth,
        ratelimit,
        compress,
        request_headers,
        response_headers,
        security_headers,
    }
}

/// Every `<prefix>.<family>NAME=value` label, sorted by lowercase name.
fn headers(r: &mut Reader, family: &str) -> Vec<(String, String)> {
    let ns = format!("{}.{family}", r.prefix);
    let mut keys: Vec<&str> = r.labels.keys().filter_map(|k| k.strip_prefix(&ns)).collect();
    keys.sort_unstable();
    let mut out = Vec::new();
    for name in keys {
        let key = format!("{family}{name}");
        let parsed = r.get(&key, |v| {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(format!("{name:?} is not a header name"));
            }
            if matches!(
                lower.as_str(),
                "host" | "connection" | "content-length" | "transfer-encoding"
            ) {
                return Err(format!("{name} is managed by wharf and cannot be set"));
            }
            if http::HeaderValue::from_str(v).is_err() {
                return Err("not a header value (visible ASCII and spaces only)".into());
            }
            Ok((lower, v.to_string()))
        });
        out.extend(parsed);
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn cidrs(v: &str) -> Result<Vec<Cidr>, String> {
    let mut nets = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() {
            return Err("empty network in the list (stray comma?)".into());
        }
        nets.push(item.parse::<Cidr>().map_err(|e| e.to_string())?);
    }
    Ok(nets)
}

/// `user:hash,…`. An argon2 hash has commas of its own (`m=19456,t=2,p=1`), so
/// a piece without a `:` continues the previous entry.
fn basic_users(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut entries: Vec<String> = Vec::new();
    for piece in v.split(',') {
        match entries.last_mut() {
            Some(last) if !piece.contains(':') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => entries.push(piece.to_string()),
        }
    }
    let mut users = Vec::new();
    for entry in entries {
        users.push(user_hash(entry.trim())?);
    }
    Ok(users)
}

/// One `user:hash` (a label entry or a line of a basic_file).
pub fn user_hash(entry: &str) -> Result<(String, String), String> {
    let Some((user, hash)) = entry.split_once(':') else {
        return Err(format!("{entry:?} is not user:hash"));
    };
    let (user, hash) = (user.trim(), hash.trim());
    if user.is_empty() {
        return Err("empty user name".into());
    }
    check_hash(hash).map_err(|e| format!("user {user:?}: {e}"))?;
    Ok((user.to_string(), hash.to_string()))
}

/// A bcrypt (`$2b$…`) or argon2 (`$argon2id$…`) hash that parses. Anything
/// else — a plain password above all — is refused.
pub fn check_hash(hash: &str) -> Result<(), String> {
    const HOW: &str = "plain passwords are refused: make a hash with `htpasswd -nbB USER PASSWORD` \
                       (bcrypt) or `argon2`, and write each $ as $$ in a compose file";
    if hash.starts_with("$2") {
        return hash
            .parse::<bcrypt::HashParts>()
            .map(drop)
            .map_err(|e| format!("not a valid bcrypt hash ({e}); {HOW}"));
    }
    if hash.starts_with("$argon2") {
        return argon2::PasswordHash::new(hash)
            .map(drop)
            .map_err(|e| format!("not a valid argon2 hash ({e}); {HOW}"));
    }
    Err(format!("not a bcrypt or argon2 hash; {HOW}"))
}

/// `10/s`, `100/m`, `5/10s`, `1000/h`: (requests, period).
fn rate_per_period(v: &str) -> Result<(u32, Duration), String> {
    const FORMAT: &str = "expected RATE/PERIOD, like 10/s, 100/m, 5/10s or 1000/h";
    let (rate, period) = v.split_once('/').ok_or(FORMAT)?;
    let rate = int_1_to(rate.trim(), MAX_RATE).map_err(|e| format!("{e} ({FORMAT})"))?;
    let period = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => parse_duration(other).map_err(|e| format!("{e} ({FORMAT})"))?,
    };
    if period.is_zero() || period > Duration::from_secs(86_400) {
        return Err(format!("the period must be more than 0 and at most a day ({FORMAT})"));
    }
    Ok((rate, period))
}

fn int_1_to(v: &str, hi: u32) -> Result<u32, String> {
    let n = v.parse::<u32>().ok().filter(|n| (1..=hi).contains(n));
    n.ok_or_else(|| format!("not a whole number from 1 to {hi}"))
}

fn rate_key(v: &str) -> Result<RateKey, String> {
    match v.split_once(':') {
        None if v.eq_ignore_ascii_case("client") => Ok(RateKey::Client),
        None if v.eq_ignore_ascii_case("pool") => Ok(RateKey::Pool),
        Some((kind, name)) if kind.trim().eq_ignore_ascii_case("header") => {
            let name = name.trim().to_ascii_lowercase();
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(_) => Ok(RateKey::Header(name)),
                Err(_) => Err(format!("{name:?} is not a header name")),
            }
        }
        _ => Err("expected client, pool or header:NAME".into()),
    }
}

/// `true` (every encoding), `false`, or a list like `br,gzip`.
fn encodings(v: &str) -> Result<Vec<Encoding>, String> {
    if let Some(on) = crate::text::parse_bool(v) {
        return Ok(if on { Encoding::ALL.to_vec() } else { Vec::new() });
    }
    let mut list = Vec::new();
    for item in v.split(',').map(str::trim) {
        let e = Encoding::ALL.iter().find(|e| e.as_str().eq_ignore_ascii_case(item));
        let e = e.ok_or_else(|| format!("unknown encoding {item:?}: true, false, or a list of zstd, br, gzip"))?;
        if !list.contains(e) {
            list.push(*e);
        }
    }
    Ok(list)
}

/// The label keys whose values differ between two members' policies.
pub(super) fn differences(a: &Policies, b: &Policies, mut check: impl FnMut(bool, &str)) {
    check(a.allow != b.allow, "allow");
    check(a.deny != b.deny, "deny");
    check(a.auth != b.auth, "auth.basic");
    check(a.ratelimit != b.ratelimit, "ratelimit");
    check(a.compress != b.compress, "compress");
    check(a.request_headers != b.request_headers, "headers.request.*");
    check(a.response_headers != b.response_headers, "headers.response.*");
    check(a.security_headers != b.security_headers, "security_headers");
}

#[cfg(test)]
mod tests;
