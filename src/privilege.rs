//! Dropping root at start, as nginx does: the image starts as root (so the
//! plain `docker run -v /var/run/docker.sock:…:ro wharf` can open the
//! `root:docker 660` socket without `--group-add`) and sets
//! `WHARF_USER=65534:65534`; before anything else runs, wharf switches to
//! that user, keeping the Docker socket's group so discovery still works
//! (and any supplementary group it was started with but root's). Once every
//! uid is non-zero the kernel clears all capabilities: the process serves
//! with none.
//!
//! [`plan`] decides (pure: who we are, what was asked, the socket's owner and
//! mode); [`drop_to`] does the stat and the syscalls; [`Outcome`] is what
//! `main` logs once logging is up. Not root (`docker run --user …`): nothing
//! to do. Refused (`cap_drop: [ALL]` took CAP_SETUID/CAP_SETGID): a warning
//! with the fix, and wharf carries on as root rather than not starting.

use std::fmt;

/// `--user`, flattened into wharf's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct UserOpts {
    /// When started as root, switch to this numeric user (and group; default:
    /// the same number) before anything else runs, keeping the Docker
    /// socket's group (so discovery still works) and those given at start. The image sets 65534:65534;
    /// 0 keeps root. Not root already: ignored.
    #[arg(long, env = "WHARF_USER", value_name = "UID[:GID]", value_parser = parse_user, global = true)]
    pub user: Option<Target>,
}

/// The user and group to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
}

/// `UID[:GID]`, numbers only (the image has no /etc/passwd); GID defaults to UID.
pub fn parse_user(s: &str) -> Result<Target, String> {
    let id = |v: &str| -> Result<u32, String> {
        match v.trim().parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(n),
            _ => Err(format!(
                "{v:?} is not a numeric id: expected UID[:GID], e.g. 65534:65534 (names are not looked up; 0 keeps root)"
            )),
        }
    };
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (id(u)?, id(g)?),
        None => {
            let u = id(s)?;
            (u, u)
        }
    };
    Ok(Target { uid, gid })
}

/// The Docker socket as `stat` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The Unix socket wharf will open: `DOCKER_HOST`'s path when it is
/// `unix://`, the default socket when `DOCKER_HOST` is unset, none for
/// `tcp://` and the like (wharf opens no socket then, so keeps no group).
pub fn socket_path(docker_host: Option<&str>) -> Option<&str> {
    match docker_host {
        None => Some("/var/run/docker.sock"),
        Some(h) => h.strip_prefix("unix://").filter(|p| !p.is_empty()),
    }
}

/// Whether `uid`/`gid`/`groups` may connect to `socket` (write permission,
/// checked the kernel's way: owner bits, else group bits, else the rest).
pub fn can_connect(uid: u32, gid: u32, groups: &[u32], socket: &Socket) -> bool {
    let bits = if uid == 0 {
        return true;
    } else if uid == socket.uid {
        socket.mode >> 6
    } else if gid == socket.gid || groups.contains(&socket.gid) {
        socket.mode >> 3
    } else {
        socket.mode
    };
    bits & 0o2 != 0
}

/// What to do at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No `--user`, or `--user 0`: stay as started.
    Keep,
    /// Started unprivileged (e.g. `docker run --user`): nothing to drop.
    NotRoot,
    /// The socket would refuse `target` whatever group it keeps: stay root.
    SocketWouldRefuse { target: Target, socket: Socket },
    /// setgroups(`groups`), then the gid, then the uid.
    Drop {
        target: Target,
        groups: Vec<u32>,
        socket: Option<Socket>,
    },
}

/// The decision, from the effective uid, `--user`, the socket (if it
/// exists) and the supplementary groups wharf was started with (`docker run
/// --group-add`, e.g. for certificate files: kept, except root's group 0).
pub fn plan(euid: u32, user: Option<Target>, socket: Option<Socket>, started_with: &[u32]) -> Plan {
    let Some(target) = user else { return Plan::Keep };
    if euid != 0 {
        return Plan::NotRoot;
    }
    if target.uid == 0 {
        return Plan::Keep;
    }
    // The socket's group even if it is 0: better uid 65534 in group root
    // than staying root to reach a root:root socket.
    let mut groups: Vec<u32> = socket.iter().map(|s| s.gid).filter(|&g| g != target.gid).collect();
    for &g in started_with {
        if g != 0 && g != target.gid && !groups.contains(&g) {
            groups.push(g);
        }
    }
    match socket {
        Some(s) if !can_connect(target.uid, target.gid, &groups, &s) => Plan::SocketWouldRefuse { target, socket: s },
        socket => Plan::Drop { target, groups, socket },
    }
}

/// The syscall that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    SetGroups,
    SetGid,
    SetUid,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::SetGroups => "setgroups",
            Step::SetGid => "setresgid",
            Step::SetUid => "setresuid",
        })
    }
}

/// What happened, for `main` to log (or to stop on) once logging is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing asked (`--user` unset or 0).
    Kept,
    /// Started as `uid`/`gid` with `groups`, not root: `--user` not applied.
    NotRoot {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
    SocketWouldRefuse {
        target: Target,
        socket: Socket,
    },
    Dropped {
        target: Target,
        groups: Vec<u32>,
        socket: Option<Socket>,
    },
    /// A syscall was refused: still uid 0. `errno` is its raw error number.
    Refused {
        target: Target,
        step: Step,
        errno: i32,
    },
    /// The calls succeeded but the ids read back differ: do not serve.
    Mismatch {
        target: Target,
        uid: u32,
        euid: u32,
        gid: u32,
        egid: u32,
    },
}

const EPERM: i32 = 1;

fn list(groups: &[u32]) -> String {
    groups.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Kept => f.write_str("running as started (no --user)"),
            Outcome::NotRoot { uid, gid, groups } => {
                write!(f, "running as uid {uid} gid {gid}")?;
                if !groups.is_empty() {
                    write!(f, " (groups: {})", list(groups))?;
                }
                f.write_str(", as started (not root: --user has nothing to drop)")
            }
            Outcome::Dropped { target, groups, socket } => {
                write!(f, "running as uid {} gid {}", target.uid, target.gid)?;
                let theirs = socket.as_ref().map(|s| s.gid).filter(|g| groups.contains(g));
                let given: Vec<u32> = groups.iter().copied().filter(|&g| Some(g) != theirs).collect();
                match (theirs, given.as_slice()) {
                    (None, []) => f.write_str(" (no supplementary group")?,
                    (Some(g), []) => write!(f, " (groups: {g}, the Docker socket's")?,
                    (None, given) => write!(f, " (groups: {}, as started", list(given))?,
                    (Some(g), given) => write!(f, " (groups: {g}, the Docker socket's; {}, as started", list(given))?,
                }
                f.write_str(")")
            }
            Outcome::SocketWouldRefuse { target, socket } => write!(
                f,
                "staying root: the Docker socket {} (uid {} gid {} mode {:o}) would refuse uid {} even with its group; \
                 make it group-writable (chmod g+rw) or set --user 0 (WHARF_USER=0) to silence this",
                socket.path,
                socket.uid,
                socket.gid,
                socket.mode & 0o7777,
                target.uid
            ),
            Outcome::Refused { target, step, errno } if *errno == EPERM => write!(
                f,
                "staying root: cannot switch to uid {} gid {} ({step}: operation not permitted, \
                 CAP_SETUID/CAP_SETGID were dropped). Fix: add them (docker run --cap-add SETUID --cap-add SETGID; \
                 compose: cap_add: [SETUID, SETGID]; they are gone once wharf has switched), \
                 or start the container unprivileged (docker run --user {}:{} --group-add <the socket's group>)",
                target.uid, target.gid, target.uid, target.gid
            ),
            Outcome::Refused { target, step, errno } => write!(
                f,
                "staying root: cannot switch to uid {} gid {} ({step}: {})",
                target.uid,
                target.gid,
                std::io::Error::from_raw_os_error(*errno)
            ),
            Outcome::Mismatch {
                target,
                uid,
                euid,
                gid,
                egid,
            } => write!(
                f,
                "switching to uid {} gid {} left uid {uid}/{euid} gid {gid}/{egid} (real/effective); not serving",
                target.uid, target.gid
            ),
        }
    }
}

impl Outcome {
    /// Log it: one info line when wharf runs as asked, a warning when it
    /// stays root against `--user`. Err for a [`Outcome::Mismatch`] (exit 2).
    pub fn log(&self) -> Result<(), String> {
        match self {
            Outcome::Kept => Ok(()),
            Outcome::NotRoot { .. } | Outcome::Dropped { .. } => {
                tracing::info!("{self}");
                Ok(())
            }
            Outcome::SocketWouldRefuse { .. } | Outcome::Refused { .. } => {
                tracing::warn!("{self}");
                Ok(())
            }
            Outcome::Mismatch { .. } => Err(self.to_string()),
        }
    }
}

fn stat_socket(path: &str) -> Option<Socket> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Socket {
        path: path.to_string(),
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
    })
}

/// Switch to `user` if wharf runs as root (see the module docs).
///
/// Must run before any thread exists (no tokio runtime yet): the
/// `set_thread_*` calls are the raw syscalls, which change the calling
/// thread only. With no other thread that is the whole process, and every
/// thread started later inherits it.
pub fn drop_to(user: Option<Target>) -> Outcome {
    use rustix::process::{getegid, geteuid, getgid, getgroups, getuid, Gid, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket = socket_path(docker_host.as_deref()).and_then(stat_socket);
    let started_with: Vec<u32> = getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect();
    let (target, groups, socket) = match plan(geteuid().as_raw(), user, socket, &started_with) {
        Plan::Keep => return Outcome::Kept,
        Plan::NotRoot => {
            return Outcome::NotRoot {
                uid: getuid().as_raw(),
                gid: getgid().as_raw(),
                groups: getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect(),
            }
        }
        Plan::SocketWouldRefuse { target, socket } => return Outcome::SocketWouldRefuse { target, socket },
        Plan::Drop { target, groups, socket } => (target, groups, socket),
    };
    let refused = |step, e: rustix::io::Errno| Outcome::Refused {
        target,
        step,
        errno: e.raw_os_error(),
    };
    // Supplementary groups first, then the group, then the user: after the
    // last one there is no privilege left to change the others.
    let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    if let Err(e) = set_thread_groups(&gids) {
        return refused(Step::SetGroups, e);
    }
    let gid = Gid::from_raw(target.gid);
    if let Err(e) = set_thread_res_gid(gid, gid, gid) {
        return refused(Step::SetGid, e);
    }
    let uid = Uid::from_raw(target.uid);
    if let Err(e) = set_thread_res_uid(uid, uid, uid) {
        return refused(Step::SetUid, e);
    }
    let now = (
        getuid().as_raw(),
        geteuid().as_raw(),
        getgid().as_raw(),
        getegid().as_raw(),
    );
    if now != (target.uid, target.uid, target.gid, target.gid) {
        return Outcome::Mismatch {
            target,
            uid: now.0,
            euid: now.1,
            gid: now.2,
            egid: now.3,
        };
    }
    Outcome::Dropped { target, groups, socket }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: Target = Target { uid: 65534, gid: 65534 };

    fn docker_sock(uid: u32, gid: u32, mode: u32) -> Socket {
        Socket {
            path: "/var/run/docker.sock".into(),
            uid,
            gid,
            mode,
        }
    }

    #[test]
    fn user_is_numeric_uid_with_an_optional_gid_defaulting_to_the_uid() {
        assert_eq!(parse_user("65534:65534"), Ok(NOBODY));
        assert_eq!(parse_user("65534"), Ok(NOBODY));
        assert_eq!(parse_user("1000:105"), Ok(Target { uid: 1000, gid: 105 }));
        assert_eq!(parse_user("0"), Ok(Target { uid: 0, gid: 0 }));
        for bad in ["nobody", "65534:nogroup", "", ":1", "1:", "-1", "4294967295"] {
            let e = parse_user(bad).unwrap_err();
            assert!(e.contains("UID[:GID]"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_socket_is_docker_hosts_unix_path_or_the_default_and_none_over_tcp() {
        assert_eq!(socket_path(None), Some("/var/run/docker.sock"));
        assert_eq!(
            socket_path(Some("unix:///run/user/1000/docker.sock")),
            Some("/run/user/1000/docker.sock")
        );
        assert_eq!(socket_path(Some("tcp://socket-proxy:2375")), None);
        assert_eq!(socket_path(Some("unix://")), None);
    }

    #[test]
    fn connecting_needs_write_permission_for_the_first_matching_class() {
        let s = docker_sock(0, 105, 0o660);
        assert!(can_connect(65534, 65534, &[105], &s));
        assert!(can_connect(65534, 105, &[], &s));
        assert!(!can_connect(65534, 65534, &[], &s));
        assert!(can_connect(0, 0, &[], &s));
        // Owner bits decide for the owner, even when "other" would allow.
        assert!(!can_connect(1000, 1, &[], &docker_sock(1000, 1, 0o466)));
        assert!(can_connect(65534, 65534, &[], &docker_sock(0, 0, 0o666)));
        assert!(!can_connect(65534, 65534, &[0], &docker_sock(0, 0, 0o640)));
    }

    #[test]
    fn root_with_a_user_drops_to_it_keeping_the_sockets_group() {
        let s = docker_sock(0, 105, 0o660);
        assert_eq!(
            plan(0, Some(NOBODY), Some(s.clone()), &[]),
            Plan::Drop {
                target: NOBODY,
                groups: vec![105],
                socket: Some(s)
            }
        );
        // No socket (tcp:// or not mounted): no supplementary group at all.
        assert_eq!(
            plan(0, Some(NOBODY), None, &[]),
            Plan::Drop {
                target: NOBODY,
                groups: vec![],
                socket: None
            }
        );
        // The socket's group is already the target's group: not repeated.
        let own = docker_sock(0, 65534, 0o660);
        assert!(matches!(plan(0, Some(NOBODY), Some(own), &[]), Plan::Drop { groups, .. } if groups.is_empty()));
    }

    #[test]
    fn groups_given_at_start_are_kept_but_roots_group_is_not() {
        let s = docker_sock(0, 105, 0o660);
        let kept = plan(0, Some(NOBODY), Some(s.clone()), &[0, 2000, 105, 65534]);
        assert_eq!(
            kept,
            Plan::Drop {
                target: NOBODY,
                groups: vec![105, 2000],
                socket: Some(s.clone())
            }
        );
        let Plan::Drop { groups, socket, .. } = kept else {
            unreachable!()
        };
        assert_eq!(
            Outcome::Dropped {
                target: NOBODY,
                groups,
                socket
            }
            .to_string(),
            "running as uid 65534 gid 65534 (groups: 105, the Docker socket's; 2000, as started)"
        );
        // A root:root socket: its group 0 is kept (rather than staying root).
        let rooted = docker_sock(0, 0, 0o660);
        assert!(matches!(plan(0, Some(NOBODY), Some(rooted), &[0]), Plan::Drop { groups, .. } if groups == [0]));
    }

    #[test]
    fn nothing_to_do_without_a_user_as_root_user_or_when_not_root() {
        let s = docker_sock(0, 105, 0o660);
        assert_eq!(plan(0, None, Some(s.clone()), &[]), Plan::Keep);
        assert_eq!(
            plan(0, Some(Target { uid: 0, gid: 0 }), Some(s.clone()), &[]),
            Plan::Keep
        );
        assert_eq!(plan(65534, Some(NOBODY), Some(s), &[]), Plan::NotRoot);
    }

    #[test]
    fn a_socket_only_root_may_open_keeps_root_rather_than_breaking_discovery() {
        let s = docker_sock(0, 0, 0o600);
        assert_eq!(
            plan(0, Some(NOBODY), Some(s.clone()), &[]),
            Plan::SocketWouldRefuse {
                target: NOBODY,
                socket: s
            }
        );
    }

    #[test]
    fn the_lines_say_who_wharf_runs_as_and_how_to_fix_a_refusal() {
        let s = docker_sock(0, 105, 0o660);
        let dropped = Outcome::Dropped {
            target: NOBODY,
            groups: vec![105],
            socket: Some(s),
        };
        assert_eq!(
            dropped.to_string(),
            "running as uid 65534 gid 65534 (groups: 105, the Docker socket's)"
        );
        let eperm = Outcome::Refused {
            target: NOBODY,
            step: Step::SetGroups,
            errno: EPERM,
        }
        .to_string();
        for want in [
            "staying root",
            "setgroups",
            "cap_add: [SETUID, SETGID]",
            "--cap-add SETUID",
            "--group-add",
        ] {
            assert!(eperm.contains(want), "{want:?} missing: {eperm}");
        }
        let not_root = Outcome::NotRoot {
            uid: 65534,
            gid: 65534,
            groups: vec![],
        };
        assert!(not_root
            .to_string()
            .starts_with("running as uid 65534 gid 65534, as started"));
        assert!(not_root.log().is_ok());
        let mismatch = Outcome::Mismatch {
            target: NOBODY,
            uid: 0,
            euid: 0,
            gid: 65534,
            egid: 65534,
        };
        assert!(mismatch.log().is_err());
    }
}
