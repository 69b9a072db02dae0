//! What a container's main process is allowed to do, read from the kernel:
//! `/proc/<pid>/status` on this host (the daemon is local) for its user,
//! groups, capabilities and `no_new_privs`, and the container's config for
//! a read-only root filesystem. The proof behind "the image runs
//! unprivileged", rather than what a compose file says it asks for.

use std::os::unix::fs::MetadataExt;

use super::docker::docker;
use super::sockproxy::DOCKER_SOCK;

/// The user the wharf image switches to (the Dockerfile's `WHARF_USER`).
pub const WHARF_UID: u32 = 65534;

/// The group of the Docker socket, as a string for `--group-add`.
pub fn docker_gid() -> String {
    std::fs::metadata(DOCKER_SOCK)
        .unwrap_or_else(|e| panic!("stat {DOCKER_SOCK}: {e}"))
        .gid()
        .to_string()
}

/// A running process's identity and privileges (`/proc/<pid>/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// Real, effective, saved and filesystem uid.
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective, permitted and ambient capability sets.
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// The container's root filesystem is mounted read-only.
    pub read_only_root: bool,
}

impl Privileges {
    /// Of the main process of container `id` (which must be running).
    /// Panics unless every thread of it has the same identity and
    /// capabilities (wharf switches user with per-thread syscalls, before
    /// any other thread exists: all of them must show it).
    pub fn of_container(id: &str) -> Privileges {
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", id]);
        let pid = pid.trim();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status of container {id}: {e}"));
        let ro = docker(&["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", id]);
        let main = Privileges::parse(&status, ro.trim() == "true");
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/task of container {id}: {e}"));
        let mut threads = 0;
        for task in tasks.flatten() {
            // A thread may end between the listing and the read.
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let thread = Privileges::parse(&status, main.read_only_root);
            assert_eq!(thread, main, "thread {:?} of container {id} differs", task.file_name());
            threads += 1;
        }
        assert!(threads >= 1, "no thread of container {id} read");
        main
    }

    /// Panics unless the socket's group (`gid`) is among the process's
    /// groups (the one wharf keeps when it switches user).
    pub fn assert_socket_group(&self, gid: &str, what: &str) {
        let gid: u32 = gid.parse().unwrap_or_else(|e| panic!("gid {gid:?}: {e}"));
        assert!(
            self.groups.contains(&gid) || self.gids.iter().all(|&g| g == gid),
            "{what}: lost the Docker socket's group {gid}: {self:?}"
        );
    }

    /// From the text of `/proc/<pid>/status`.
    pub fn parse(status: &str, read_only_root: bool) -> Privileges {
        let field = |name: &str| -> &str {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in /proc status:\n{status}"))
        };
        let ids = |name: &str| -> Vec<u32> {
            field(name)
                .split_whitespace()
                .map(|v| v.parse().unwrap_or_else(|e| panic!("{name} {v:?}: {e}")))
                .collect()
        };
        let caps = |name: &str| u64::from_str_radix(field(name), 16).unwrap_or_else(|e| panic!("{name}: {e}"));
        Privileges {
            uids: ids("Uid"),
            gids: ids("Gid"),
            groups: ids("Groups"),
            cap_eff: caps("CapEff"),
            cap_prm: caps("CapPrm"),
            cap_amb: caps("CapAmb"),
            no_new_privs: field("NoNewPrivs") == "1",
            read_only_root,
        }
    }

    /// Panics unless this is wharf's least-privilege deployment: every uid
    /// is [`WHARF_UID`], no capability in any set, no privilege gain, a
    /// read-only root filesystem. Returns a one-line summary to print.
    pub fn assert_least(&self, what: &str) -> String {
        assert!(
            self.uids.iter().all(|&u| u == WHARF_UID),
            "{what}: runs as uids {:?}, not {WHARF_UID}: {self:?}",
            self.uids
        );
        assert_eq!(
            (self.cap_eff, self.cap_prm, self.cap_amb),
            (0, 0, 0),
            "{what}: holds capabilities: {self:?}"
        );
        assert!(self.no_new_privs, "{what}: may gain privileges: {self:?}");
        assert!(self.read_only_root, "{what}: root filesystem writable: {self:?}");
        format!(
            "{what}: uid {:?} gid {:?} groups {:?}, CapEff {:016x}, NoNewPrivs 1, read-only root",
            self.uids, self.gids, self.groups, self.cap_eff
        )
    }
}
