//! docker-compose (v1) projects with unique names, taken down on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::build::{require_docker, workspace_root};
use super::docker::{cli_output, container_ip, unique};

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
        let file = workspace_root().join("tests").join("fixtures").join(file.as_ref());
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
            .output();
        cli_output(&format!("docker-compose -p {} {}", self.project, args.join(" ")), out)
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
