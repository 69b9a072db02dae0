//! Unique names and Drop guards for Docker networks and containers, and the
//! docker CLI calls the tests make (`docker inspect`, `docker logs`, …).
//!
//! Everything goes through the docker CLI: simple and real. Guards never
//! panic in `drop` (that would abort a panicking test); cleanup failures are
//! printed to stderr instead. Compose projects are in [`super::compose`].

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::build::require_docker;

/// Label put on every container and network the harness creates, with the
/// test process id as value, so leftovers can be traced back. It deliberately
/// does not start with `wharf` so wharf's label parser never sees it.
pub const OWNER_LABEL: &str = "it.wharf-test.pid";

/// A process-wide unique name: `wharf-it-<pid>-<n>-<tag>`.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("wharf-it-{}-{n}-{tag}", std::process::id())
}

pub(super) fn owner_label() -> String {
    format!("{OWNER_LABEL}={}", std::process::id())
}

/// The trimmed stdout of a finished CLI command, or `Err` naming `command`
/// with its exit status and stderr.
pub(super) fn cli_output(command: &str, out: std::io::Result<Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("cannot run {command}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`{command}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `docker <args>`; returns trimmed stdout, or `Err` with the exit status and stderr.
pub fn docker_try(args: &[&str]) -> Result<String, String> {
    let command = format!("docker {}", args.join(" "));
    cli_output(&command, Command::new("docker").args(args).output())
}

/// Runs `docker <args>` and returns trimmed stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    docker_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `docker <args>` quietly; true if it succeeded.
pub fn docker_ok(args: &[&str]) -> bool {
    docker_try(args).is_ok()
}

/// Cleanup for Drop impls: run, and report (never panic) on failure.
fn docker_cleanup(args: &[&str]) {
    if let Err(e) = docker_try(args) {
        eprintln!("warning: cleanup: {e}");
    }
}

/// The IPv4 address of container `id` (id or name) on `network`. Panics if it has none.
pub fn container_ip(id: &str, network: &str) -> Ipv4Addr {
    let format = format!("{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}");
    let ip = docker(&["container", "inspect", "--format", &format, id]);
    ip.parse()
        .unwrap_or_else(|_| panic!("container {id} has no IPv4 address on network {network} (got {ip:?})"))
}

/// A Docker network with a unique name, removed on drop (with every container
/// still attached to it).
#[derive(Debug)]
pub struct Network {
    pub name: String,
}

impl Network {
    /// `docker network create <unique(tag)>` (bridge driver).
    pub fn create(tag: &str) -> Network {
        Network::create_with(tag, &[])
    }

    /// Like [`Network::create`], with extra `docker network create` arguments
    /// (e.g. `["--internal"]`).
    pub fn create_with(tag: &str, extra: &[&str]) -> Network {
        require_docker();
        let name = unique(tag);
        let label = owner_label();
        let mut args = vec!["network", "create", "--label", &label];
        args.extend_from_slice(extra);
        args.push(&name);
        docker(&args);
        Network { name }
    }

    /// Ids of the containers attached to this network.
    pub fn containers(&self) -> Vec<String> {
        self.try_containers().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_containers(&self) -> Result<Vec<String>, String> {
        let out = docker_try(&[
            "network",
            "inspect",
            "--format",
            "{{range $id, $c := .Containers}}{{$id}} {{end}}",
            &self.name,
        ])?;
        Ok(out.split_whitespace().map(str::to_string).collect())
    }
}

impl std::ops::Deref for Network {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        match self.try_containers() {
            Ok(ids) => {
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f", "-v"];
                    args.extend(ids.iter().map(String::as_str));
                    docker_cleanup(&args);
                }
            }
            Err(e) => eprintln!("warning: cleanup: {e}"),
        }
        docker_cleanup(&["network", "rm", &self.name]);
    }
}

/// A container with a unique name, removed (`docker rm -f -v`) on drop.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
}

impl Container {
    /// `docker run -d --name <unique(tag)> <args…>`; `args` hold the options,
    /// the image and the command, e.g.
    /// `["--network", &net.name, "--label", "wharf.port=80", demo_image()]`.
    pub fn run(tag: &str, args: &[&str]) -> Container {
        Container::new("run", tag, args)
    }

    /// `docker create --name <unique(tag)> <args…>`: created, not started.
    pub fn create(tag: &str, args: &[&str]) -> Container {
        Container::new("create", tag, args)
    }

    fn new(verb: &str, tag: &str, args: &[&str]) -> Container {
        require_docker();
        let name = unique(tag);
        let label = owner_label();
        let mut full = vec![verb];
        if verb == "run" {
            full.push("-d");
        }
        full.extend(["--name", &name, "--label", &label]);
        full.extend_from_slice(args);
        match docker_try(&full) {
            Ok(out) => {
                let id = out.lines().last().unwrap_or_default().trim().to_string();
                Container { id, name }
            }
            Err(e) => {
                // `docker run` can fail after creating the container (e.g. a bad entrypoint).
                let _ = docker_try(&["rm", "-f", "-v", &name]);
                panic!("{e}");
            }
        }
    }

    /// `docker inspect --format <format>` on this container.
    pub fn inspect(&self, format: &str) -> String {
        docker(&["container", "inspect", "--format", format, &self.id])
    }

    /// The container's IPv4 address on `network`.
    pub fn ip(&self, network: &str) -> Ipv4Addr {
        container_ip(&self.id, network)
    }

    /// `ip(network):port`.
    pub fn addr(&self, network: &str, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip(network), port))
    }

    /// The container's hostname (by default the first 12 characters of its id).
    pub fn hostname(&self) -> String {
        self.inspect("{{.Config.Hostname}}")
    }

    /// `docker stop -t <timeout_secs>`.
    pub fn stop(&self, timeout_secs: u32) {
        docker(&["stop", "-t", &timeout_secs.to_string(), &self.id]);
    }

    /// `docker start`.
    pub fn start(&self) {
        docker(&["start", &self.id]);
    }

    /// `docker restart -t <timeout_secs>`.
    pub fn restart(&self, timeout_secs: u32) {
        docker(&["restart", "-t", &timeout_secs.to_string(), &self.id]);
    }

    /// `docker kill -s <signal>` (e.g. `"TERM"`, `"KILL"`).
    pub fn kill(&self, signal: &str) {
        docker(&["kill", "-s", signal, &self.id]);
    }

    /// `docker pause`.
    pub fn pause(&self) {
        docker(&["pause", &self.id]);
    }

    /// `docker unpause`.
    pub fn unpause(&self) {
        docker(&["unpause", &self.id]);
    }

    /// `docker network connect <network>` (extra args, e.g. `["--alias", "x"]`, first).
    pub fn connect(&self, network: &str, extra: &[&str]) {
        let mut args = vec!["network", "connect"];
        args.extend_from_slice(extra);
        args.extend([network, &self.id]);
        docker(&args);
    }

    /// `docker network disconnect <network>`.
    pub fn disconnect(&self, network: &str) {
        docker(&["network", "disconnect", network, &self.id]);
    }

    /// Whether the container is running (`.State.Running`; paused counts as running).
    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// `.State.Status`: created, running, paused, restarting, exited, dead.
    pub fn status(&self) -> String {
        self.inspect("{{.State.Status}}")
    }

    /// `.State.Health.Status` (starting, healthy, unhealthy), or "" without a healthcheck.
    pub fn health(&self) -> String {
        self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")
    }

    /// `.State.ExitCode`.
    pub fn exit_code(&self) -> i64 {
        let s = self.inspect("{{.State.ExitCode}}");
        s.parse().unwrap_or_else(|_| panic!("bad exit code {s:?}"))
    }

    /// Whether the container still exists.
    pub fn exists(&self) -> bool {
        docker_ok(&["container", "inspect", &self.id])
    }

    /// `docker logs` (stdout then stderr).
    pub fn logs(&self) -> String {
        docker_logs(&self.id)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- logs of container {} (test panicking) ---\n{}",
                self.name,
                tail(&self.logs(), 40)
            );
        }
        docker_cleanup(&["rm", "-f", "-v", &self.id]);
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `docker logs <id>` of any container (stdout then stderr).
pub fn docker_logs(id: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", id])
        .output()
        .expect("cannot run docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
