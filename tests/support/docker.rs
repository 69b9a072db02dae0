//! Unique names and Drop guards for Docker networks, containers and compose projects.
//!
//! Everything goes through the docker / docker-compose CLIs: simple and real.
//! Guards never panic in `drop` (that would abort a panicking test); cleanup
//! failures are printed to stderr instead.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
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

fn owner_label() -> String {
    format!("{OWNER_LABEL}={}", std::process::id())
}

/// Runs `docker <args>`; returns trimmed stdout, or `Err` with the exit status and stderr.
pub fn docker_try(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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
        let out = docker(&[
            "network",
            "inspect",
            "--format",
            "{{range $id, $c := .Containers}}{{$id}} {{end}}",
            &self.name,
        ]);
        out.split_whitespace().map(str::to_string).collect()
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
        match docker_try(&[
            "network",
            "inspect",
            "--format",
            "{{range $id, $c := .Containers}}{{$id}} {{end}}",
            &self.name,
        ]) {
            Ok(ids) => {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f", "-v"];
                    args.extend(ids);
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
        let out = Command::new("docker")
            .args(["logs", &self.id])
            .output()
            .expect("cannot run docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
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

/// A docker-compose (v1) project with a unique name; `down -v --remove-orphans`
/// on drop.
#[derive(Debug)]
pub struct Compose {
    pub project: String,
    /// Directory of the compose file; commands run there.
    pub dir: PathBuf,
    file: PathBuf,
    env: Vec<(String, String)>,
}

impl Compose {
    /// A project `unique(tag)` for `file`; a relative `file` is taken relative
    /// to `tests/fixtures/`. Nothing runs until [`Compose::up`].
    pub fn new(tag: &str, file: impl AsRef<Path>) -> Compose {
        require_docker();
        let file = super::build::workspace_root()
            .join("tests")
            .join("fixtures")
            .join(file.as_ref());
        assert!(file.is_file(), "compose file {} not found", file.display());
        let dir = file.parent().unwrap().to_path_buf();
        // compose v1 lowercases and strips the project name; ours is already clean.
        Compose {
            project: unique(tag).to_lowercase(),
            dir,
            file,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every docker-compose invocation
    /// (for `${VAR}` interpolation in the file, e.g. image tags).
    pub fn env(mut self, key: &str, value: &str) -> Compose {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `docker-compose -p <project> -f <file> <args…>`; returns stdout or
    /// `Err` with stderr.
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("cannot run docker-compose: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "`docker-compose -p {} {}` failed ({}): {}",
                self.project,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Like [`Compose::try_run`], panicking on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `up -d <args…>` (e.g. `[]`, `["demo"]`, `["--scale", "demo=2"]`).
    pub fn up(&self, args: &[&str]) {
        let mut full = vec!["up", "-d"];
        full.extend_from_slice(args);
        self.run(&full);
    }

    /// `up -d --no-recreate --scale <service>=<n> <service>`.
    pub fn scale(&self, service: &str, n: usize) {
        let spec = format!("{service}={n}");
        self.run(&["up", "-d", "--no-recreate", "--scale", &spec, service]);
    }

    /// Ids of the service's containers (`ps -q <service>`, stopped ones included).
    pub fn ps_ids(&self, service: &str) -> Vec<String> {
        self.run(&["ps", "-q", service])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The project's default network, `<project>_default`.
    pub fn default_network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// IPs of the service's containers on the default network.
    pub fn ips(&self, service: &str) -> Vec<Ipv4Addr> {
        let net = self.default_network();
        self.ps_ids(service).iter().map(|id| container_ip(id, &net)).collect()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if let Err(e) = self.try_run(&["down", "-v", "--remove-orphans", "-t", "1"]) {
            eprintln!("warning: cleanup: {e}");
        }
    }
}
