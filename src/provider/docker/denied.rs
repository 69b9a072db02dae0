//! "Permission denied" on the Docker socket, explained.
//!
//! Started as root, the image switches to 65534 keeping the socket's group
//! ([`crate::privilege`]), so this is for a process started unprivileged:
//! `docker run --user 65534 -v /var/run/docker.sock:…` without
//! `--group-add`, or a host user outside the `docker` group, on a socket
//! that is `root:docker`, mode 660, fails to connect with EACCES. The bare
//! OS error says nothing about the fix, so the start-up error names the
//! socket's group and the three ways out (add that group, a socket proxy,
//! starting as root and letting wharf switch). The decisions are plain
//! functions over an error chain and numbers; [`diagnose`] does the two
//! system calls.

use std::error::Error;
use std::os::unix::fs::MetadataExt;

/// Why wharf could not open a Unix Docker socket: its identity and the
/// socket's owner, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    /// The socket's group and mode, when `stat` could read them.
    pub socket: Option<(u32, u32)>,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot open the Docker socket {}: permission denied for uid {} gid {}",
            self.path, self.uid, self.gid
        )?;
        match self.socket {
            Some((group, mode)) => write!(
                f,
                " (the socket is group {group}, mode {:o}). Add its group (docker run --group-add {group}; compose: group_add: [\"{group}\"])",
                mode & 0o7777
            )?,
            None => write!(f, ". Add the socket's group (--group-add \"$(stat -c %g {})\")", self.path)?,
        }
        write!(
            f,
            ", or point DOCKER_HOST at a read-only socket proxy, or start it as root (no docker run --user): \
             wharf then switches to WHARF_USER itself, keeping the socket's group"
        )
    }
}

/// Whether any error in `err`'s source chain is an OS "permission denied".
pub fn is_permission_denied(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::PermissionDenied {
                return true;
            }
        }
        // Some layers flatten the io::Error into their message.
        if e.to_string().contains("Permission denied (os error 13)") {
            return true;
        }
        next = e.source();
    }
    false
}

/// The socket path of a `unix://` `DOCKER_HOST` (or the default), `None`
/// for other schemes.
pub fn unix_path(docker_host: &str) -> Option<&str> {
    docker_host.strip_prefix("unix://").filter(|p| !p.is_empty())
}

/// [`Denied`] when `err` is a permission error on a Unix socket at `docker_host`.
pub fn diagnose(docker_host: &str, err: &(dyn Error + 'static)) -> Option<Denied> {
    let path = unix_path(docker_host)?;
    if !is_permission_denied(err) {
        return None;
    }
    let socket = std::fs::metadata(path).ok().map(|m| (m.gid(), m.mode()));
    Some(Denied {
        path: path.to_string(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn permission_denied_is_found_anywhere_in_the_chain() {
        let io = std::io::Error::from_raw_os_error(13);
        assert!(is_permission_denied(&io));
        assert!(is_permission_denied(&Wrapper(std::io::Error::from_raw_os_error(13))));
        assert!(!is_permission_denied(&Wrapper(std::io::Error::from_raw_os_error(2))));
    }

    #[test]
    fn only_unix_hosts_have_a_socket_path() {
        assert_eq!(unix_path("unix:///var/run/docker.sock"), Some("/var/run/docker.sock"));
        assert_eq!(unix_path("tcp://socket-proxy:2375"), None);
        assert_eq!(unix_path("unix://"), None);
        let denied = std::io::Error::from_raw_os_error(13);
        assert_eq!(diagnose("tcp://proxy:2375", &denied), None);
    }

    #[test]
    fn the_message_names_the_group_to_add_and_the_other_ways_out() {
        let d = Denied {
            path: "/var/run/docker.sock".into(),
            uid: 65534,
            gid: 65534,
            socket: Some((105, 0o140660)),
        };
        let m = d.to_string();
        assert!(m.contains("uid 65534"), "{m}");
        assert!(m.contains("group 105, mode 660"), "{m}");
        assert!(m.contains("--group-add 105"), "{m}");
        assert!(m.contains("DOCKER_HOST") && m.contains("start it as root"), "{m}");
        let unknown = Denied { socket: None, ..d };
        assert!(unknown.to_string().contains("stat -c %g /var/run/docker.sock"));
    }
}
