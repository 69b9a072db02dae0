//! Pool-wide options: what every member of a pool must agree on, normalised
//! so that two members agree exactly when their options are equal.
//!
//! Parsing them from labels is [`crate::labels`]' job; this file only says
//! what they are and how they are named.

use std::fmt;
use std::time::Duration;

/// Most further backends a request may try (`wharf.retries` is 0 to this).
pub const MAX_RETRIES: u32 = 10;

/// Cookie name used by `sticky=cookie`.
pub const DEFAULT_STICKY_COOKIE: &str = "wharf_sticky";

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
    /// Further backends tried when one can't be reached, 0..=[`MAX_RETRIES`].
    pub retries: u32,
    /// Most requests in flight to one backend (`wharf.max_conns`); 0: no cap.
    pub max_conns: u32,
    /// `wharf.tls`; `None`: the default ([`TlsMode::effective`]).
    pub tls: Option<TlsMode>,
    /// `wharf.https_redirect`: plain-HTTP requests get a 308 to `https://`.
    pub https_redirect: bool,
    /// `wharf.hsts`: `Strict-Transport-Security: max-age=…` on HTTPS responses.
    pub hsts: Option<Duration>,
    /// `wharf.connect`: HTTP/1.1 `CONNECT` requests are tunnelled to the
    /// backend (refused with 405 otherwise).
    pub connect: bool,
    /// `wharf.allow`, `wharf.auth.*`, `wharf.ratelimit*`, `wharf.compress`, `wharf.headers.*`.
    /// Boxed: most pools have none, and options travel inside label outcomes.
    pub policies: Box<super::Policies>,
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
            max_conns: 0,
            tls: None,
            https_redirect: false,
            hsts: None,
            connect: false,
            policies: Box::default(),
        }
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

/// Where a pool's hosts get their certificate (`wharf.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Obtained and renewed through ACME.
    Acme,
    /// From `--tls-dir` only.
    File,
    /// None sought; `wharf check` does not ask for one.
    Off,
}

impl TlsMode {
    pub const ALL: &[TlsMode] = &[TlsMode::Acme, TlsMode::File, TlsMode::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Acme => "acme",
            TlsMode::File => "file",
            TlsMode::Off => "off",
        }
    }

    /// The mode of a pool: its label, else `acme` for a pool with a host
    /// when ACME is configured, else `file`.
    pub fn effective(label: Option<TlsMode>, has_host: bool, acme_configured: bool) -> TlsMode {
        match label {
            Some(m) => m,
            None if has_host && acme_configured => TlsMode::Acme,
            None => TlsMode::File,
        }
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
