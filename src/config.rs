//! Command line and environment: every flag also reads `WHARF_<FLAG>`, a flag
//! wins over its variable (clap's `env` support does exactly that).
//!
//! The parsed [`Cli`] is turned into a plain, validated [`Config`] so that the
//! rest of the crate never sees clap types and tests can build a `Config` by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cidr::Cidr;
pub use crate::model::StaticPool;
use crate::text::parse_duration;

/// wharf: a load balancer that configures itself from Docker labels.
///
/// Label a container `wharf.pool=NAME` (or `wharf.enable=true`) on the network
/// wharf watches and it takes traffic within a fraction of a second; stop it and
/// it leaves the pool without a failed request. No config file, no reload.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about, long_about = None)]
#[command(
    after_help = "Every flag also reads WHARF_<FLAG> (e.g. WHARF_ADMIN_LISTEN); the flag wins.\n\
DOCKER_HOST (unix://, tcp://, with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) is honoured.\n\
Labels are documented in labels.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub opts: Opts,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to Docker, list containers, print the pools and backends wharf
    /// would route and every label problem; exit 1 if there is any problem.
    Check {
        /// Print the result as JSON (the `/api/state` shape: pools, routes,
        /// skipped, problems, warnings) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Probe the admin listener's /healthz (the image's HEALTHCHECK: it has no shell).
    Healthcheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// Discover backends from the Docker Engine API (containers and their labels).
    Docker,
    /// Discover backends from a Docker Swarm manager's API: the running tasks
    /// of labelled services, at their overlay network addresses.
    Swarm,
    /// Only `--static` pools; Docker is not contacted.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Address of the HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, env = "WHARF_LISTEN", default_value = "0.0.0.0:80", global = true)]
    pub listen: SocketAddr,

    /// The Docker network whose container addresses are used (default: the
    /// network wharf's own container shares with a backend, else its only one).
    /// With `--provider swarm`, the overlay network of the tasks' addresses.
    #[arg(long, env = "WHARF_NETWORK", global = true)]
    pub network: Option<String>,

    /// Label namespace: `<prefix>.pool`, `<prefix>.port`, …
    #[arg(long, env = "WHARF_LABEL_PREFIX", default_value = "wharf", global = true)]
    pub label_prefix: String,

    /// Every container exposing exactly one port joins a pool, without labels
    /// (unless it carries `<prefix>.enable=false`).
    #[arg(long, env = "WHARF_EXPOSED_BY_DEFAULT", global = true)]
    pub exposed_by_default: bool,

    /// Address of the admin listener: /healthz, /readyz, /api/state, /metrics, dashboard.
    #[arg(long, env = "WHARF_ADMIN_LISTEN", default_value = "127.0.0.1:8081", global = true)]
    pub admin_listen: SocketAddr,

    /// Host names the admin listener answers (comma-separated, port
    /// ignored); others get 421. Default: any. /healthz and /readyz always answer.
    #[arg(
        long,
        env = "WHARF_ADMIN_HOSTS",
        value_name = "HOST,…",
        value_delimiter = ',',
        global = true
    )]
    pub admin_hosts: Vec<String>,

    /// Require `Authorization: Bearer <TOKEN>` for /api/* and /metrics on
    /// the admin listener (prefer the WHARF_ADMIN_TOKEN variable: flags show in `ps`).
    #[arg(
        long,
        env = "WHARF_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,

    /// Where backends come from.
    #[arg(long, env = "WHARF_PROVIDER", value_enum, default_value = "docker", global = true)]
    pub provider: Provider,

    /// A fixed pool serving any host, beside discovered ones: POOL=ADDR[,ADDR…] (repeatable).
    #[arg(
        long = "static",
        env = "WHARF_STATIC",
        value_name = "POOL=ADDR,…",
        value_delimiter = ';',
        global = true
    )]
    pub static_pools: Vec<String>,

    /// A label on a --static pool, as a container would carry it: POOL:LABEL=VALUE
    /// (repeatable), e.g. web:wharf.compress=true or web:wharf.ratelimit=10/s.
    #[arg(
        long = "static-label",
        env = "WHARF_STATIC_LABEL",
        value_name = "POOL:LABEL=VALUE",
        value_delimiter = ';',
        global = true
    )]
    pub static_labels: Vec<String>,

    /// Time allowed to open a TCP connection to a backend; also how long a
    /// lone backend that became ready under 2 s ago is waited for while it
    /// refuses connections (cold start).
    #[arg(long, env = "WHARF_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration, global = true)]
    pub connect_timeout: Duration,

    /// Time allowed for a backend to send response headers (then 504).
    #[arg(long, env = "WHARF_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,

    /// Idle keep-alive time for client connections, also the time a request
    /// head may take to arrive (slow-client guard); upstream idle connections
    /// are closed sooner (min of this and 900ms) to stay below backends' own timeouts.
    #[arg(long, env = "WHARF_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration, global = true)]
    pub idle_timeout: Duration,

    /// Longest silence inside a request body (and a request head's
    /// silence before detection): a client trickling its upload slower is
    /// answered 408 and closed, and no backend is blamed.
    #[arg(long, env = "WHARF_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub body_timeout: Duration,

    /// Most client connections open at once, over all workers; more are
    /// accepted and closed at once. 0: what the descriptor limit allows
    /// (wharf raises its soft limit to the hard one at start), half of it
    /// minus a reserve, so the admin listener always has descriptors left.
    #[arg(long, env = "WHARF_MAX_CONNECTIONS", default_value_t = 0, global = true)]
    pub max_connections: usize,

    /// The kernel hands a new client connection (--listen, --tls-listen)
    /// to wharf once its first bytes have arrived, or after this long
    /// without any (TCP_DEFER_ACCEPT, nginx's `listen … deferred`; Linux
    /// rounds it up to 1, 3, 7, 15, 31 or 63 s); 0: at once. A connection
    /// that has sent nothing costs wharf nothing meanwhile.
    #[arg(long, env = "WHARF_DEFER_ACCEPT", default_value = "1s", value_parser = parse_duration, global = true)]
    pub defer_accept: Duration,

    /// An upgraded connection (WebSocket) with no byte either way for this
    /// long is closed.
    #[arg(long, env = "WHARF_TUNNEL_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration, global = true)]
    pub tunnel_idle_timeout: Duration,

    /// On SIGTERM/SIGINT, time given to in-flight requests before exiting.
    #[arg(long, env = "WHARF_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub drain_timeout: Duration,

    /// Request-serving threads, each with its own runtime, listener
    /// (SO_REUSEPORT) and upstream connections. 0: one per available core.
    #[arg(long, env = "WHARF_WORKERS", default_value_t = 0, global = true)]
    pub workers: usize,

    /// Log format on stderr.
    #[arg(long, env = "WHARF_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// Log one line per request (target wharf::access): client, method, host,
    /// path, status, bytes, times, pool, backend, attempts, request id.
    #[arg(long, env = "WHARF_ACCESS_LOG", global = true)]
    pub access_log: bool,

    /// Peers whose own X-Forwarded-For/-Proto/-Host are kept (wharf appends to
    /// X-Forwarded-For); from anyone else they are replaced. Networks or
    /// addresses, comma-separated: 10.0.0.0/8,192.168.1.7. Default: none.
    #[arg(
        long,
        env = "WHARF_TRUSTED_PROXIES",
        value_name = "CIDR,…",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<String>,

    /// Address of the TLS listener (HTTP/1.1 and HTTP/2 by ALPN). Default:
    /// off, or 0.0.0.0:443 once certificates are configured (--tls-dir).
    #[arg(long, env = "WHARF_TLS_LISTEN", value_name = "ADDR", global = true)]
    pub tls_listen: Option<SocketAddr>,

    /// Directory of PEM certificates and keys (NAME.crt + NAME.key, or one
    /// NAME.pem holding both), served for their SANs; rescanned every 2s.
    #[arg(long, env = "WHARF_TLS_DIR", value_name = "DIR", global = true)]
    pub tls_dir: Option<PathBuf>,

    /// Time a client has to complete the TLS handshake (then it is dropped).
    #[arg(long, env = "WHARF_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub tls_handshake_timeout: Duration,

    #[command(flatten)]
    pub acme: crate::tls::acme::config::AcmeOpts,

    /// `--user`: applied by `main` before anything else, not part of [`Config`].
    #[command(flatten)]
    pub privilege: crate::privilege::UserOpts,
}

/// Idle upstream connections are closed after at most this long: below the
/// shortest keep-alive timeout common servers use (1 s), so wharf never
/// reuses a connection the backend is about to close.
pub const UPSTREAM_IDLE_MAX: Duration = Duration::from_millis(900);

/// Longest `--defer-accept`: past a few seconds a silent client is one the
/// detection deadline (`--idle-timeout`) should judge, not the kernel.
const DEFER_ACCEPT_MAX: Duration = Duration::from_secs(60);

/// `--defer-accept` as the kernel takes it: whole seconds, a fraction
/// rounded up, so that `500ms` still defers.
fn defer_accept_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Validated settings, plain data.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub network: Option<String>,
    pub label_prefix: String,
    pub exposed_by_default: bool,
    pub provider: Provider,
    pub static_pools: Vec<StaticPool>,
    pub timeouts: Timeouts,
    pub log_format: LogFormat,
    pub access_log: bool,
    pub trusted_proxies: Vec<Cidr>,
    /// Request-serving threads (at least 1).
    pub workers: usize,
    /// `--tls-listen`, resolved: `None` = no TLS listener.
    pub tls_listen: Option<SocketAddr>,
    pub tls_dir: Option<PathBuf>,
    pub tls_handshake_timeout: Duration,
    /// ACME settings; `None` = off (no `--acme-email`).
    pub acme: Option<crate::tls::acme::AcmeSettings>,
    /// `--max-connections` (0: from the descriptor limit at start).
    pub max_connections: usize,
    /// `--defer-accept` in whole seconds, rounded up (0: off).
    pub defer_accept_secs: u32,
    /// `--admin-hosts` and `--admin-token`.
    pub admin_access: crate::admin_access::AdminAccess,
}

/// The TLS listener's address when certificates are configured but
/// `--tls-listen` is not given.
pub const DEFAULT_TLS_LISTEN: &str = "0.0.0.0:443";

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
    pub client_idle: Duration,
    pub upstream_idle: Duration,
    pub drain: Duration,
    /// Longest silence inside a client's request body (`--body-timeout`).
    pub body_idle: Duration,
    /// Longest silence in an upgraded connection (`--tunnel-idle-timeout`).
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(60),
            client_idle: Duration::from_secs(60),
            upstream_idle: UPSTREAM_IDLE_MAX,
            drain: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            tunnel_idle: Duration::from_secs(600),
        }
    }
}

impl Opts {
    /// Validate flags into a [`Config`]; the error names the flag and the fix.
    pub fn into_config(self) -> Result<Config, String> {
        let static_pools = self
            .static_pools
            .iter()
            .map(|s| parse_static(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut static_pools = static_pools;
        for s in &self.static_labels {
            let bad = || format!("--static-label {s:?}: expected POOL:LABEL=VALUE, e.g. web:wharf.compress=true");
            let (pool, kv) = s.split_once(':').ok_or_else(bad)?;
            let (key, value) = kv.split_once('=').ok_or_else(bad)?;
            let sp = static_pools.iter_mut().find(|p| p.name == pool.trim());
            let sp = sp.ok_or_else(|| format!("--static-label {s:?}: no --static pool named {:?}", pool.trim()))?;
            sp.labels.push((key.trim().to_string(), value.to_string()));
        }
        if self.provider == Provider::None && static_pools.is_empty() {
            return Err("--provider none needs at least one --static POOL=ADDR[,ADDR…]".into());
        }
        if self.label_prefix.is_empty() || self.label_prefix.contains(char::is_whitespace) {
            return Err(format!(
                "--label-prefix {:?}: must be a non-empty word like `wharf`",
                self.label_prefix
            ));
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<Cidr>().map_err(|e| format!("--trusted-proxies: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if self.workers > 1024 {
            return Err(format!("--workers {}: at most 1024 (0 = one per core)", self.workers));
        }
        for (name, d) in [
            ("--connect-timeout", self.connect_timeout),
            ("--request-timeout", self.request_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--tls-handshake-timeout", self.tls_handshake_timeout),
            ("--body-timeout", self.body_timeout),
            ("--tunnel-idle-timeout", self.tunnel_idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.defer_accept > DEFER_ACCEPT_MAX {
            return Err(format!(
                "--defer-accept {:?}: at most {}s (0 = hand connections over at once)",
                self.defer_accept,
                DEFER_ACCEPT_MAX.as_secs()
            ));
        }
        if let Some(dir) = &self.tls_dir {
            if !dir.is_dir() {
                return Err(format!(
                    "--tls-dir {}: not a readable directory; create it or point it at your certificates",
                    dir.display()
                ));
            }
        }
        // Certificates configured: TLS on by default. (ACME: add its switch here.)
        let acme = self.acme.into_settings()?;
        let certificates = self.tls_dir.is_some() || acme.is_some();
        let tls_listen = self
            .tls_listen
            .or_else(|| certificates.then(|| DEFAULT_TLS_LISTEN.parse().expect("valid address")));
        Ok(Config {
            tls_listen,
            tls_dir: self.tls_dir,
            tls_handshake_timeout: self.tls_handshake_timeout,
            acme,
            listen: self.listen,
            admin_listen: self.admin_listen,
            network: self.network.filter(|n| !n.is_empty()),
            label_prefix: self.label_prefix,
            exposed_by_default: self.exposed_by_default,
            provider: self.provider,
            static_pools,
            timeouts: Timeouts {
                connect: self.connect_timeout,
                request: self.request_timeout,
                client_idle: self.idle_timeout,
                upstream_idle: self.idle_timeout.min(UPSTREAM_IDLE_MAX),
                drain: self.drain_timeout,
                body_idle: self.body_timeout,
                tunnel_idle: self.tunnel_idle_timeout,
            },
            log_format: self.log_format,
            access_log: self.access_log,
            trusted_proxies,
            max_connections: self.max_connections,
            defer_accept_secs: defer_accept_secs(self.defer_accept),
            admin_access: crate::admin_access::AdminAccess {
                hosts: self
                    .admin_hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
                token: self.admin_token.filter(|t| !t.is_empty()),
            },
            workers: match self.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
        })
    }
}

/// `--static POOL=ADDR[,ADDR…]`, parsed where the static pool is defined.
pub use crate::model::desired::parse_static;

#[cfg(test)]
mod tests {
    use super::*;

    /// `wharf ARGS…` parsed and validated.
    fn cfg(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["wharf"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().opts.into_config()
    }

    #[test]
    fn static_pool_parses_name_and_addresses() {
        let p = parse_static("web=127.0.0.1:8080, 127.0.0.1:8081").unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.addrs.len(), 2);
        assert_eq!(p.addrs[1], "127.0.0.1:8081".parse().unwrap());
    }

    #[test]
    fn static_pool_without_equals_or_with_bad_address_is_an_error_naming_the_fix() {
        assert!(parse_static("127.0.0.1:80").unwrap_err().contains("POOL=ADDR"));
        assert!(parse_static("web=localhost").unwrap_err().contains("IP:PORT"));
        assert!(parse_static("w b=127.0.0.1:1").is_err());
    }

    #[test]
    fn flags_win_over_environment_and_durations_parse() {
        let cli = Cli::try_parse_from(["wharf", "--listen", "127.0.0.1:9000", "--connect-timeout", "250ms"]).unwrap();
        let cfg = cli.opts.into_config().unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.timeouts.connect, Duration::from_millis(250));
    }

    #[test]
    fn trusted_proxies_parse_as_a_comma_list_and_a_bad_one_names_the_flag() {
        let cli = Cli::try_parse_from(["wharf", "--trusted-proxies", "10.0.0.0/8,192.168.1.7"]).unwrap();
        let cfg = cli.opts.into_config().unwrap();
        let shown: Vec<String> = cfg.trusted_proxies.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32"]);
        let cli = Cli::try_parse_from(["wharf", "--trusted-proxies", "10.0.0.0/40"]).unwrap();
        let e = cli.opts.into_config().unwrap_err();
        assert!(e.starts_with("--trusted-proxies: \"10.0.0.0/40\""), "{e}");
        let cli = Cli::try_parse_from(["wharf"]).unwrap();
        assert!(cli.opts.into_config().unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn tls_listens_on_443_once_a_tls_dir_is_given_and_not_before() {
        assert_eq!(cfg(&[]).unwrap().tls_listen, None);
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        let c = cfg(&["--tls-dir", dir]).unwrap();
        assert_eq!(c.tls_listen, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(c.tls_handshake_timeout, Duration::from_secs(10));
        let c = cfg(&["--tls-dir", dir, "--tls-listen", "127.0.0.1:8443"]).unwrap();
        assert_eq!(c.tls_listen.unwrap().port(), 8443);
        let e = cfg(&["--tls-dir", "/nonexistent/wharf-certs"]).unwrap_err();
        assert!(
            e.starts_with("--tls-dir /nonexistent/wharf-certs: not a readable directory"),
            "{e}"
        );
    }

    #[test]
    fn defer_accept_is_one_second_by_default_rounds_up_to_whole_seconds_and_is_bounded() {
        assert_eq!(cfg(&[]).unwrap().defer_accept_secs, 1);
        assert_eq!(cfg(&["--defer-accept", "0"]).unwrap().defer_accept_secs, 0);
        assert_eq!(cfg(&["--defer-accept", "500ms"]).unwrap().defer_accept_secs, 1);
        assert_eq!(cfg(&["--defer-accept", "3s"]).unwrap().defer_accept_secs, 3);
        let e = cfg(&["--defer-accept", "2m"]).unwrap_err();
        assert!(e.starts_with("--defer-accept 120s: at most 60s"), "{e}");
    }

    #[test]
    fn provider_none_without_static_pools_is_refused() {
        let cli = Cli::try_parse_from(["wharf", "--provider", "none"]).unwrap();
        assert!(cli.opts.into_config().unwrap_err().contains("--static"));
    }
}
