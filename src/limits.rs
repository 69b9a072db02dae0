//! Hard bounds on what clients can make wharf hold: file descriptors and
//! client connections.
//!
//! A process inherits a descriptor soft limit (often 1,024) far below the
//! hard limit it may raise it to; wharf raises it at start and logs both.
//! Then it caps client connections (`--max-connections`) below that limit,
//! with room left for each client's upstream connection and for the admin
//! listener, so a connection flood is refused at the door — accepted and
//! closed at once — instead of exhausting descriptors and starving
//! `/healthz`. The default (`0` = auto) is what the descriptor limit allows:
//! half of it (one upstream socket per client socket), minus a reserve.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for everything that is not a client connection: the
/// listeners, the Docker connection, admin and health-check sockets, logs.
pub const RESERVED_FDS: u64 = 64;

/// The descriptor limit after trying to raise it: `(before, after)`.
/// `Err` names why it could not be raised (it stays as inherited).
pub fn raise_nofile() -> Result<(u64, u64), (u64, String)> {
    let lim = getrlimit(Resource::Nofile);
    let before = lim.current.unwrap_or(u64::MAX);
    let Some(target) = lim.maximum.or(Some(u64::MAX)).filter(|&m| m > before) else {
        return Ok((before, before));
    };
    // Linux refuses "unlimited" for NOFILE: cap at the kernel's nr_open default.
    let target = target.min(1 << 20);
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: lim.maximum,
        },
    ) {
        Ok(()) => Ok((before, target)),
        Err(e) => Err((before, e.to_string())),
    }
}

/// `--max-connections 0` (auto): what `nofile` descriptors allow.
pub fn auto_max_connections(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(RESERVED_FDS) / 2;
    usable.clamp(16, 1 << 20) as usize
}

/// Open client connections across every worker, against one maximum.
#[derive(Debug)]
pub struct ConnLimit {
    max: usize,
    open: AtomicUsize,
    /// Connections refused because the maximum was reached.
    pub refused: AtomicU64,
}

impl Default for ConnLimit {
    fn default() -> Self {
        ConnLimit::new(usize::MAX)
    }
}

impl ConnLimit {
    pub fn new(max: usize) -> ConnLimit {
        ConnLimit {
            max,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot for one more connection, released when the permit drops;
    /// `None` (and counted) at the maximum.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnPermit> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.max {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self
                .open
                .compare_exchange_weak(open, open + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ConnPermit(Arc::clone(self))),
                Err(now) => open = now,
            }
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// One open client connection's slot.
#[derive(Debug)]
pub struct ConnPermit(Arc<ConnLimit>);

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_the_connection_over_the_maximum_and_frees_a_slot_on_drop() {
        let l = Arc::new(ConnLimit::new(2));
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        assert_eq!(l.refused.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(l.open(), 1);
        assert!(l.try_acquire().is_some());
    }

    #[test]
    fn auto_leaves_room_for_upstream_sockets_and_the_reserve() {
        assert_eq!(auto_max_connections(1024), 480);
        assert_eq!(auto_max_connections(1 << 20), ((1 << 20) - 64) / 2);
        assert_eq!(auto_max_connections(64), 16, "never below 16");
        assert_eq!(auto_max_connections(0), 16);
    }

    #[test]
    fn raising_the_descriptor_limit_never_lowers_it() {
        let before = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        match raise_nofile() {
            Ok((b, after)) => {
                assert_eq!(b, before);
                assert!(after >= before);
            }
            Err((b, _)) => assert_eq!(b, before),
        }
        assert!(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX) >= before);
    }
}
