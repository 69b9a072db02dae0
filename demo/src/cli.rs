//! Hand-written command line parsing (flags win over environment variables).

use std::net::SocketAddr;
use std::time::Duration;

use crate::parse::{parse_bool, parse_duration, parse_listen};
use crate::Config;

pub const USAGE: &str = "\
usage: wharf-demo [OPTIONS]
       wharf-demo probe URL

Demo and test HTTP backend for wharf (like traefik/whoami).

options (flag / environment variable):
  --listen ADDR                DEMO_LISTEN             listen address, IP:PORT or :PORT (default 0.0.0.0:80)
  --name NAME                  DEMO_NAME               name reported by the endpoints (default: hostname)
  --keepalive-timeout DURATION DEMO_KEEPALIVE_TIMEOUT  close idle keep-alive connections after DURATION (e.g. 1s, 500ms)
  --health-fail                DEMO_HEALTH_FAIL=1      start with /health failing
  --no-sigterm                 DEMO_NO_SIGTERM=1       do not handle SIGTERM (as PID 1: ignore it)
  --drain-delay DURATION       DEMO_DRAIN_DELAY        on SIGTERM/SIGINT keep serving this long before draining
  --delay DURATION             DEMO_DELAY              wait this long before answering any request but /health* and /_demo/*
  --listen-delay DURATION      DEMO_LISTEN_DELAY       wait this long after start before listening (a slow cold start: connects are refused until then)
  -h, --help                                           print this help

probe URL: GET a plain http:// URL with a 2 s timeout; exit 0 on 2xx, else 1.
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(ServeOptions),
    Probe(String),
    Help,
}

/// Options of the server mode.
#[derive(Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub no_sigterm: bool,
    /// Time between start and listening (connects are refused meanwhile).
    pub listen_delay: Duration,
    pub config: Config,
}

/// Parses `args` (without the program name). `env` looks up environment
/// variables; `hostname` is the machine's hostname (the default name).
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>, hostname: String) -> Result<Command, String> {
    if args.first().map(String::as_str) == Some("probe") {
        return match &args[1..] {
            [url] => Ok(Command::Probe(url.clone())),
            _ => Err("probe takes exactly one URL".to_owned()),
        };
    }

    let mut listen = None;
    let mut name = None;
    let mut keepalive_timeout = None;
    let mut health_fail = None;
    let mut no_sigterm = None;
    let mut drain_delay = None;
    let mut delay = None;
    let mut listen_delay = None;

    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--listen" => listen = Some(value()?),
            "--name" => name = Some(value()?),
            "--keepalive-timeout" => keepalive_timeout = Some(value()?),
            "--drain-delay" => drain_delay = Some(value()?),
            "--delay" => delay = Some(value()?),
            "--listen-delay" => listen_delay = Some(value()?),
            "--health-fail" | "--no-sigterm" if inline_value.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--health-fail" => health_fail = Some(true),
            "--no-sigterm" => no_sigterm = Some(true),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }

    let listen = listen
        .or_else(|| env("DEMO_LISTEN"))
        .map_or(Ok(SocketAddr::from(([0, 0, 0, 0], 80))), |v| parse_listen(&v))?;
    let name = name
        .or_else(|| env("DEMO_NAME"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| hostname.clone());
    let keepalive_timeout = keepalive_timeout
        .or_else(|| env("DEMO_KEEPALIVE_TIMEOUT"))
        .filter(|v| !v.is_empty())
        .map(|v| parse_duration(&v))
        .transpose()?;
    let drain_delay = drain_delay
        .or_else(|| env("DEMO_DRAIN_DELAY"))
        .filter(|v| !v.is_empty())
        .map_or(Ok(Duration::ZERO), |v| parse_duration(&v))?;
    let delay = delay
        .or_else(|| env("DEMO_DELAY"))
        .filter(|v| !v.is_empty())
        .map_or(Ok(Duration::ZERO), |v| parse_duration(&v))?;
    let listen_delay = listen_delay
        .or_else(|| env("DEMO_LISTEN_DELAY"))
        .filter(|v| !v.is_empty())
        .map_or(Ok(Duration::ZERO), |v| parse_duration(&v))?;
    let env_flag = |key: &str| env(key).map_or(Ok(false), |v| parse_bool(&v));
    let health_fail = health_fail.map_or_else(|| env_flag("DEMO_HEALTH_FAIL"), Ok)?;
    let no_sigterm = no_sigterm.map_or_else(|| env_flag("DEMO_NO_SIGTERM"), Ok)?;

    if keepalive_timeout == Some(Duration::ZERO) {
        return Err("--keepalive-timeout must be greater than zero".to_owned());
    }

    Ok(Command::Serve(ServeOptions {
        listen,
        no_sigterm,
        listen_delay,
        config: Config {
            name,
            hostname,
            keepalive_timeout,
            health_fail,
            drain_delay,
            delay,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let lookup = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        parse(&args, lookup, "host-1".to_owned())
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> ServeOptions {
        match parse_with(args, env) {
            Ok(Command::Serve(opts)) => opts,
            other => panic!("expected serve options, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let opts = serve(&[], &[]);
        assert_eq!(opts.listen, SocketAddr::from(([0, 0, 0, 0], 80)));
        assert!(!opts.no_sigterm);
        assert_eq!(opts.config.name, "host-1");
        assert_eq!(opts.config.hostname, "host-1");
        assert_eq!(opts.config.keepalive_timeout, None);
        assert!(!opts.config.health_fail);
        assert_eq!(opts.config.drain_delay, Duration::ZERO);
        assert_eq!(opts.config.delay, Duration::ZERO);
    }

    #[test]
    fn flags() {
        let opts = serve(
            &[
                "--listen",
                "127.0.0.1:8080",
                "--name=web-1",
                "--keepalive-timeout",
                "500ms",
                "--health-fail",
                "--no-sigterm",
                "--drain-delay=2s",
                "--delay",
                "150ms",
            ],
            &[],
        );
        assert_eq!(opts.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert!(opts.no_sigterm);
        assert_eq!(opts.config.name, "web-1");
        assert_eq!(opts.config.keepalive_timeout, Some(Duration::from_millis(500)));
        assert!(opts.config.health_fail);
        assert_eq!(opts.config.drain_delay, Duration::from_secs(2));
        assert_eq!(opts.config.delay, Duration::from_millis(150));
    }

    #[test]
    fn environment_and_precedence() {
        let env = [
            ("DEMO_LISTEN", ":9000"),
            ("DEMO_NAME", "from-env"),
            ("DEMO_KEEPALIVE_TIMEOUT", "1s"),
            ("DEMO_HEALTH_FAIL", "1"),
            ("DEMO_NO_SIGTERM", "true"),
            ("DEMO_DRAIN_DELAY", "3s"),
            ("DEMO_DELAY", "20ms"),
            ("DEMO_LISTEN_DELAY", "500ms"),
        ];
        let opts = serve(&[], &env);
        assert_eq!(opts.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(opts.config.name, "from-env");
        assert_eq!(opts.config.keepalive_timeout, Some(Duration::from_secs(1)));
        assert!(opts.config.health_fail && opts.no_sigterm);
        assert_eq!(opts.config.drain_delay, Duration::from_secs(3));
        assert_eq!(opts.config.delay, Duration::from_millis(20));
        assert_eq!(opts.listen_delay, Duration::from_millis(500));

        let opts = serve(&["--listen", ":81", "--name", "flag"], &env);
        assert_eq!(opts.listen.port(), 81);
        assert_eq!(opts.config.name, "flag");

        let opts = serve(&[], &[("DEMO_HEALTH_FAIL", "0"), ("DEMO_NAME", "")]);
        assert!(!opts.config.health_fail);
        assert_eq!(opts.config.name, "host-1");
    }

    #[test]
    fn probe_and_help() {
        assert!(matches!(
            parse_with(&["probe", "http://127.0.0.1/health"], &[]),
            Ok(Command::Probe(url)) if url == "http://127.0.0.1/health"
        ));
        assert!(parse_with(&["probe"], &[]).is_err());
        assert!(matches!(parse_with(&["--help"], &[]), Ok(Command::Help)));
    }

    #[test]
    fn errors() {
        assert!(parse_with(&["--bogus"], &[]).is_err());
        assert!(parse_with(&["--listen"], &[]).is_err());
        assert!(parse_with(&["--listen", "nowhere"], &[]).is_err());
        assert!(parse_with(&["--drain-delay", "soon"], &[]).is_err());
        assert!(parse_with(&["--delay", "slow"], &[]).is_err());
        assert!(parse_with(&["--keepalive-timeout", "0s"], &[]).is_err());
        assert!(parse_with(&["--health-fail=1"], &[]).is_err());
        assert!(parse_with(&[], &[("DEMO_NO_SIGTERM", "perhaps")]).is_err());
    }
}
