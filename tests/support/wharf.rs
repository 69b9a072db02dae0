//! Running the static wharf binary on the host.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::build::binaries;
use super::docker::{tail, unique};
use super::http::{self, Resp, POLL_INTERVAL};

/// How long [`Wharf::spawn`] waits for `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind 127.0.0.1:0")
        .port()
}

/// Starts the static wharf binary with `args` and extra environment
/// variables, without any `WHARF_*` variable the test process may have
/// inherited (each test passes its own `envs`); stdout and stderr go to `log`.
fn spawn_wharf(args: &[&str], envs: &[(&str, &str)], log: File) -> Child {
    spawn_wharf_in(&[], args, envs, log)
}

/// [`spawn_wharf`] run through `wrapper` (e.g. `prlimit --nofile=256:256 --`).
fn spawn_wharf_in(wrapper: &[&str], args: &[&str], envs: &[(&str, &str)], log: File) -> Child {
    let bin = &binaries().wharf;
    let mut cmd = match wrapper.split_first() {
        None => Command::new(bin),
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(bin);
            c
        }
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

/// The whole of a log file so far, lossily decoded.
fn read_log(path: &Path) -> std::io::Result<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn log_file(tag: &str) -> (PathBuf, File) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.log", unique(tag)));
    let file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    (path, file)
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A wharf process on the host, listening on free loopback ports. Dropping it
/// sends SIGTERM, waits up to 5 s, then kills it; if the test is panicking the
/// tail of wharf's log is printed.
pub struct Wharf {
    /// The proxy listener (`--listen`).
    pub listen: SocketAddr,
    /// The admin listener (`--admin-listen`).
    pub admin: SocketAddr,
    child: Child,
    log_path: PathBuf,
    exit: Option<i32>,
}

impl Wharf {
    /// Starts `wharf --listen 127.0.0.1:P --admin-listen 127.0.0.1:Q <args…>`
    /// with extra environment variables, and waits up to 30 s for `GET /readyz`
    /// to answer 200. Panics with wharf's log if it exits or never gets ready.
    /// `WHARF_*` variables of the test process are not inherited.
    pub async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Wharf {
        // The free ports are released before wharf binds them; if another
        // process grabbed one meanwhile, start again on new ports.
        for attempt in 1.. {
            let mut wharf = Wharf::start(args, envs);
            match wharf.ready_or_exit(READY_TIMEOUT).await {
                Ok(()) => return wharf,
                Err(log) if attempt < 3 && log.to_lowercase().contains("address already in use") => {
                    eprintln!("wharf: port clash on attempt {attempt}, retrying on new ports");
                }
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!()
    }

    /// Starts wharf like [`Wharf::spawn`] without waiting for readiness.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Wharf {
        Wharf::start_in(&[], args, envs)
    }

    /// [`Wharf::start`] through a wrapper command that execs wharf, e.g.
    /// `["prlimit", "--nofile=256:256", "--"]` for a low descriptor limit.
    pub fn start_in(wrapper: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Wharf {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Wharf::start_on_in(wrapper, listen, admin, args, envs)
    }

    /// Starts wharf on the given listen and admin addresses (for tests that
    /// must name wharf's ports to another program before it starts, such as
    /// pebble's challenge ports), without waiting for readiness.
    pub fn start_on(listen: SocketAddr, admin: SocketAddr, args: &[&str], envs: &[(&str, &str)]) -> Wharf {
        Wharf::start_on_in(&[], listen, admin, args, envs)
    }

    fn start_on_in(
        wrapper: &[&str],
        listen: SocketAddr,
        admin: SocketAddr,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Wharf {
        let (log_path, log) = log_file("wharf");
        let (listen_arg, admin_arg) = (listen.to_string(), admin.to_string());
        let mut full = vec!["--listen", &listen_arg, "--admin-listen", &admin_arg];
        full.extend_from_slice(args);
        let child = spawn_wharf_in(wrapper, &full, envs, log);
        eprintln!(
            "wharf pid {} listen {listen} admin {admin} log {}",
            child.id(),
            log_path.display()
        );
        Wharf {
            listen,
            admin,
            child,
            log_path,
            exit: None,
        }
    }

    /// Waits until `GET /readyz` answers 200; panics early, with the log, if
    /// wharf exits, and after `timeout` if it never gets ready.
    pub async fn wait_ready(mut self, timeout: Duration) -> Wharf {
        if let Err(msg) = self.ready_or_exit(timeout).await {
            panic!("{msg}");
        }
        self
    }

    /// `Err(message with the log)` if wharf exits before ready; panics on timeout.
    async fn ready_or_exit(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(code) = self.try_exit() {
                return Err(format!(
                    "wharf exited before ready (exit code {code}) after {} ms; log ({}):\n{}",
                    start.elapsed().as_millis(),
                    self.log_path.display(),
                    self.log()
                ));
            }
            let last = match self.admin_get("/readyz").await {
                Ok(r) if r.status == 200 => {
                    eprintln!("wharf ready: took {} ms", start.elapsed().as_millis());
                    return Ok(());
                }
                Ok(r) => format!("/readyz answered {}: {}", r.status, r.body),
                Err(e) => e,
            };
            if start.elapsed() >= timeout {
                panic!(
                    "wharf not ready after {:?}; last observation: {last}\nlog:\n{}",
                    start.elapsed(),
                    self.log()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the file receiving wharf's stdout and stderr.
    pub fn log_path(&self) -> &PathBuf {
        &self.log_path
    }

    /// Everything wharf has logged so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// wharf's SIGTERM→drained lag (µs) for container `id`, from its log
    /// (see [`drain_lags`]); panics with the log if there is none.
    pub fn drain_lag_us(&self, id: &str) -> u64 {
        let log = self.log();
        drain_lags(&log)
            .into_iter()
            .find(|(prefix, _)| id.starts_with(prefix.as_str()))
            .map(|(_, lag)| lag)
            .unwrap_or_else(|| panic!("no `stop signal: draining` line for {id} in wharf's log:\n{log}"))
    }

    /// `GET path` with `Host: host` through the proxy listener.
    pub async fn get(&self, host: &str, path: &str) -> Result<Resp, String> {
        http::get(self.listen, host, path).await
    }

    /// Any request through the proxy listener (see [`http::request`]).
    pub async fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, String> {
        http::request(self.listen, method, host, path, headers, body).await
    }

    /// `GET path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Result<Resp, String> {
        http::get(self.admin, "localhost", path).await
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, …) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }

    fn try_exit(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(exit_code(status));
            }
        }
        self.exit
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code
    /// (128 + signal if killed by a signal), or `None` if still running.
    /// Blocks the thread (polling every 20 ms); prints the time it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(code) = self.try_exit() {
                eprintln!("wharf exit: took {} ms (code {code})", start.elapsed().as_millis());
                return Some(code);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if self.try_exit().is_none() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.try_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
            if self.try_exit().is_none() {
                eprintln!(
                    "warning: wharf pid {} ignored SIGTERM for 5 s; killing it",
                    self.child.id()
                );
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if panicking {
            eprintln!(
                "--- last 80 lines of wharf's log ({}) ---\n{}\n--- end of wharf's log ---",
                self.log_path.display(),
                tail(&self.log(), 80)
            );
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// `(container id prefix, lag_us)` of every "stop signal: draining" line
/// in a wharf log: how long after Docker's stop signal (its `kill` event)
/// wharf had drained the container.
pub fn drain_lags(log: &str) -> Vec<(String, u64)> {
    let field = |line: &str, key: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(|v| v.trim_matches('"').to_string())
    };
    log.lines()
        .filter(|l| l.contains("stop signal: draining"))
        .filter_map(|l| Some((field(l, "id=")?, field(l, "lag_us=")?.parse().ok()?)))
        .collect()
}

/// Runs `wharf <args…>` to completion (60 s at most) with extra environment
/// variables; returns the exit code and stdout+stderr interleaved.
pub fn wharf_run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let (log_path, log) = log_file("wharf-run");
    let mut child = spawn_wharf(args, envs, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wharf") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = read_log(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path);
            panic!("`wharf {}` still running after 60 s; output:\n{out}", args.join(" "));
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let out = read_log(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    (exit_code(status), out)
}

/// Runs `wharf check <args…>`; returns the exit code (1 if any label problem)
/// and the output.
pub fn wharf_check(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut full = vec!["check"];
    full.extend_from_slice(args);
    wharf_run(&full, envs)
}
