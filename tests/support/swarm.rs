//! A real single-node Docker Swarm for `tests/swarm.rs`, and guards for what
//! the tests create in it.
//!
//! * [`Swarm::join`] takes a process-wide lock (the swarm tests run one at a
//!   time), runs `docker swarm init --advertise-addr 127.0.0.1` only if the
//!   daemon is in no swarm, and on drop — also when the test panics — leaves
//!   it again (`docker swarm leave --force`) if it created it. Other test
//!   binaries never see a swarm appear, since cargo runs test binaries one
//!   after the other, and the swarm lives only as long as one test.
//! * [`Overlay::create`] — an attachable overlay network, removed on drop
//!   (retried while Swarm still tears down its tasks' endpoints).
//! * [`Service::create`] — `docker service create --name <unique> …`,
//!   removed on drop; helpers `scale`, `update`, `running_tasks`.
//! * [`Swarm::wharf`] — wharf itself as a service on the overlay, with
//!   host-mode published ports (the routing mesh needs IPVS, which this
//!   kernel lacks) that the test reaches on `127.0.0.1`: overlay addresses
//!   are not reachable from the host, so no request ever goes to one.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::build::{demo_image, require_docker, wharf_image};
use super::docker::{docker, docker_try, owner_label, unique};
use super::http::{get, poll};
use super::wharf::free_port;

/// The single-node swarm of one test (see the module docs).
pub struct Swarm {
    created: bool,
    /// `docker swarm init` creates the `docker_gwbridge` network and leaving
    /// keeps it: removed on drop when this swarm made it.
    made_gwbridge: bool,
    _lock: MutexGuard<'static, ()>,
}

impl Swarm {
    pub fn join() -> Swarm {
        let lock = Swarm::lock();
        require_docker();
        // Build the images first: the swarm should live only while the test runs.
        let _ = (wharf_image(), demo_image());
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let created = state != "active";
        let made_gwbridge = created && docker_try(&["network", "inspect", "docker_gwbridge"]).is_err();
        if created {
            let t = Instant::now();
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            eprintln!("docker swarm init: took {} ms", t.elapsed().as_millis());
        } else {
            eprintln!("the daemon is already in a swarm: using it, and leaving it as it is");
        }
        Swarm {
            created,
            made_gwbridge,
            _lock: lock,
        }
    }

    /// The lock the swarm tests take turns with.
    pub fn lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is the daemon in a swarm now?
    pub fn active() -> bool {
        docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active"
    }

    /// A fresh label prefix: this test's wharf sees only this test's services.
    pub fn prefix() -> String {
        unique("p").replace('-', "")
    }

    /// wharf as a swarm service on `net`: `--provider swarm`, the socket
    /// mounted read-only, its proxy and admin ports published in host mode.
    pub async fn wharf(&self, net: &Overlay, prefix: &str, replicas: u32, extra: &[&str]) -> WharfService {
        assert!(
            replicas <= 1,
            "host-mode ports: one wharf task per port pair on one node"
        );
        let (port, admin_port) = (free_port(), free_port());
        let publish = format!("mode=host,target=80,published={port}");
        let publish_admin = format!("mode=host,target=8081,published={admin_port}");
        let prefix_flag = format!("--label-prefix={prefix}");
        let mut args = vec![
            "--network",
            &net.name,
            "--publish",
            &publish,
            "--publish",
            &publish_admin,
            "--mount",
            "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock,readonly",
            wharf_image(),
            "--provider",
            "swarm",
            &prefix_flag,
        ];
        args.extend_from_slice(extra);
        let service = Service::create("wharf", &args);
        let w = WharfService {
            service,
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        };
        let admin = w.admin;
        poll(
            "wharf's swarm task answers /readyz",
            Duration::from_secs(90),
            || async move {
                match get(admin, "localhost", "/readyz").await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("{}: {}", r.status, r.body)),
                    Err(e) => Err(e),
                }
            },
        )
        .await;
        w
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = docker_try(&["swarm", "leave", "--force"]) {
                eprintln!("warning: cleanup: {e}");
            }
            if self.made_gwbridge {
                // Best effort: Docker 20.10 often keeps an internal ingress
                // endpoint on it after leaving, and then refuses.
                let _ = docker_try(&["network", "rm", "docker_gwbridge"]);
            }
        }
    }
}

/// wharf running as a swarm service, reached on loopback.
pub struct WharfService {
    pub service: Service,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl WharfService {
    /// The task's last 400 log lines.
    pub fn logs(&self) -> String {
        // The task's stderr (where wharf logs) comes out on the CLI's stderr.
        match std::process::Command::new("docker")
            .args(["service", "logs", "--raw", "--tail", "400", &self.service.name])
            .output()
        {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
            Err(e) => format!("docker service logs: {e}"),
        }
    }
}

/// An attachable overlay network with a unique name.
pub struct Overlay {
    pub name: String,
}

impl Overlay {
    pub fn create(tag: &str) -> Overlay {
        let name = unique(tag);
        let label = owner_label();
        docker(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
            &label,
            &name,
        ]);
        Overlay { name }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Endpoints of tasks just removed linger a moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match docker_try(&["network", "rm", &self.name]) {
                Ok(_) => return,
                Err(e) if e.contains("No such network") || e.contains("not found") => return,
                Err(e) if Instant::now() >= deadline => return eprintln!("warning: cleanup: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// A swarm service with a unique name, removed on drop.
pub struct Service {
    pub name: String,
}

impl Service {
    /// `docker service create --detach --no-resolve-image --name <unique(tag)> <args…>`
    /// (the images are local: there is no registry to resolve them at).
    pub fn create(tag: &str, args: &[&str]) -> Service {
        let name = unique(tag);
        let label = owner_label();
        let mut all = vec![
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            &name,
            "--label",
            &label,
            "--container-label",
            &label,
        ];
        all.extend_from_slice(args);
        docker(&all);
        Service { name }
    }

    /// `docker service scale <name>=n --detach`.
    pub fn scale(&self, n: u32) {
        docker(&["service", "scale", "--detach", &format!("{}={n}", self.name)]);
    }

    /// `docker service update --detach <args…> <name>`.
    pub fn update(&self, args: &[&str]) {
        let mut all = vec!["service", "update", "--detach"];
        all.extend_from_slice(args);
        all.push(&self.name);
        docker(&all);
    }

    /// Ids of the tasks Swarm wants running and that run.
    pub fn running_tasks(&self) -> Vec<String> {
        let out = docker(&[
            "service",
            "ps",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.CurrentState}}",
            &self.name,
        ]);
        out.lines()
            .filter(|l| l.contains("Running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// The short container ids (= the demo's hostnames) of the running tasks.
    pub fn hostnames(&self) -> Vec<String> {
        let filter = format!("label=com.docker.swarm.service.name={}", self.name);
        let out = docker(&["ps", "--filter", &filter, "--format", "{{.ID}}"]);
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Err(e) = docker_try(&["service", "rm", &self.name]) {
            eprintln!("warning: cleanup: {e}");
        }
    }
}

/// A locally built image tag, removed on drop.
pub struct Image {
    pub tag: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker_try(&["rmi", "-f", &self.tag]);
    }
}
