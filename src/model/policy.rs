//! Per-pool policies as the labels state them: plain, normalised data that
//! members of a pool must agree on (it is part of [`super::PoolOptions`]).
//!
//! What they *do* at request time is [`crate::policy`]'s job; parsing them
//! from labels is [`crate::labels`]'. The user-facing contract, with the
//! order in which they apply, is the "Policies" section of `labels.md`.

use std::fmt;
use std::time::Duration;

use super::cidr::Cidr;

/// Every policy of one pool. The default is "no policy at all", and a pool
/// whose policies are the default costs nothing on the request path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies {
    /// `wharf.allow`: when not empty, only clients inside one of these.
    pub allow: Vec<Cidr>,
    /// `wharf.deny`: clients inside one of these are refused (wins over allow).
    pub deny: Vec<Cidr>,
    pub auth: Option<BasicAuth>,
    pub ratelimit: Option<RateLimit>,
    /// `wharf.compress`: the encodings offered, in wharf's order of
    /// preference; empty = no compression.
    pub compress: Vec<Encoding>,
    /// `wharf.headers.request.NAME=value`: (lowercase name, value), sorted by
    /// name; an empty value removes the header.
    pub request_headers: Vec<(String, String)>,
    /// `wharf.headers.response.NAME=value`, as above.
    pub response_headers: Vec<(String, String)>,
    /// `wharf.security_headers=true`: nosniff, frame options, referrer policy.
    pub security_headers: bool,
}

impl Policies {
    pub fn is_empty(&self) -> bool {
        self == &Policies::default()
    }
}

/// `wharf.auth.basic=user:hash,…` and/or `wharf.auth.basic_file=/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// (user, bcrypt or argon2 PHC hash), in label order.
    pub users: Vec<(String, String)>,
    /// An htpasswd-style file (`user:hash` per line) read when the pool is built.
    pub file: Option<String>,
    /// `wharf.auth.forward=true`: the `Authorization` header reaches the backend.
    pub forward: bool,
    /// The realm in `WWW-Authenticate` (the pool name unless `wharf.auth.realm`).
    pub realm: Option<String>,
}

/// `wharf.ratelimit=RATE/PERIOD`, `wharf.ratelimit.burst=N`, `wharf.ratelimit.by=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per `period` (the refill rate).
    pub rate: u32,
    pub period: Duration,
    /// Requests allowed at once when the bucket is full (default: `rate`).
    pub burst: u32,
    pub by: RateKey,
}

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client address as wharf sees it (after `--trusted-proxies`).
    Client,
    /// The value of a request header (lowercase name); a missing header is one key.
    Header(String),
    /// One bucket for the whole pool.
    Pool,
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::Client => f.write_str("client"),
            RateKey::Header(h) => write!(f, "header:{h}"),
            RateKey::Pool => f.write_str("pool"),
        }
    }
}

/// A content coding wharf can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Zstd,
    Br,
    Gzip,
}

impl Encoding {
    /// `wharf.compress=true`'s list, in order of preference.
    pub const ALL: &[Encoding] = &[Encoding::Zstd, Encoding::Br, Encoding::Gzip];

    /// The token in `Accept-Encoding` / `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }
}
