//! Binding the public listener once per worker.
//!
//! Each worker thread accepts on its own socket: the sockets share one
//! address through `SO_REUSEPORT`, and the kernel spreads new connections
//! over their accept queues, so no accept wakes a thread that does not get
//! the connection (a single socket shared by several epoll instances wakes
//! them all). The first socket is bound like any other; if the port is taken
//! by a process that did not set `SO_REUSEPORT`, binding fails as usual.
//!
//! Each socket also defers accepts (`--defer-accept`, `TCP_DEFER_ACCEPT`):
//! the kernel hands a connection over once its first bytes are there, so a
//! new connection's first read finds its request, and the worker is woken
//! once per connection instead of twice (the accept, then the first bytes).
//! Measured with `Connection: close` (issue 9): 0.85× the CPU per request,
//! context switches per request 0.74 → 0.06, `epoll_wait` calls 0.75 → 0.19.
//! A connection that sends nothing waits in the kernel until the deferral
//! ends (the kernel rounds it up to 1, 3, 7, 15, 31 or 63 s), holding no
//! descriptor and no `--max-connections` place, then meets the detection
//! deadline like any other. When the SYN queue overflows and SYN cookies
//! take over, the kernel hands connections over at once, as without it.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections each socket may queue (the kernel caps it at somaxconn).
const BACKLOG: i32 = 4096;

/// `n` non-blocking listening sockets on `addr` (all on the port the first one
/// got when `addr` has port 0), deferring accepts by `defer_secs` (0: not).
pub fn reuseport(addr: SocketAddr, n: usize, defer_secs: u32) -> io::Result<Vec<TcpListener>> {
    let first = socket(addr, defer_secs)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(socket(bound, defer_secs)?);
    }
    Ok(all)
}

/// Whether `listener` defers accepts: its connections usually arrive with
/// their first bytes (see the module docs). An error reads as "no".
pub fn defers_accept(listener: &impl std::os::fd::AsFd) -> bool {
    deferral_secs(listener) > 0
}

/// How long `listener` holds a silent connection, as the kernel rounded
/// `--defer-accept` (1, 3, 7, 15, 31 or 63 s; 0: not deferred).
pub fn deferral_secs(listener: &impl std::os::fd::AsFd) -> u32 {
    wharf_sockopt::tcp_defer_accept(listener).unwrap_or(0)
}

fn socket(addr: SocketAddr, defer_secs: u32) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Inherited by every accepted socket (Linux copies the listener's options
    // when a connection is established, so it must be set before `listen`):
    // no `setsockopt` per connection.
    s.set_tcp_nodelay(true)?;
    if defer_secs > 0 {
        // Not a reason to refuse to start: without it connections are
        // handed over at once, as with `--defer-accept 0`.
        if let Err(e) = wharf_sockopt::set_tcp_defer_accept(&s, defer_secs) {
            tracing::warn!(%addr, error = %e, "--defer-accept: TCP_DEFER_ACCEPT refused; connections are handed over at once");
        }
    }
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// What to do about a failed bind of `addr` (set by `flag`): a port below
/// 1024 refused to an unprivileged user (the image switches to uid 65534) needs
/// the low-port sysctl or a higher port, not another process stopped.
pub fn bind_hint(err: &io::Error, addr: SocketAddr, flag: &str) -> String {
    if err.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        format!(
            "ports below 1024 need root (--user 0 / WHARF_USER=0 keeps it) or net.ipv4.ip_unprivileged_port_start=0 \
             (docker run --sysctl net.ipv4.ip_unprivileged_port_start=0, Docker's default since 20.10, \
             not with --network host); or choose a port >= 1024 with {flag}"
        )
    } else {
        format!("is another process using it? choose another {flag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_low_port_points_at_the_sysctl_not_at_another_process() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let low = bind_hint(&denied, "0.0.0.0:80".parse().unwrap(), "--listen");
        assert!(
            low.contains("ip_unprivileged_port_start=0") && low.contains("--listen"),
            "{low}"
        );
        let taken = io::Error::from(io::ErrorKind::AddrInUse);
        let other = bind_hint(&taken, "0.0.0.0:80".parse().unwrap(), "--listen");
        assert_eq!(other, "is another process using it? choose another --listen");
        let high = bind_hint(&denied, "0.0.0.0:8080".parse().unwrap(), "--admin-listen");
        assert!(high.contains("another --admin-listen"), "{high}");
    }

    #[test]
    fn n_sockets_share_one_port_and_a_plainly_bound_port_is_refused() {
        let socks = reuseport("127.0.0.1:0".parse().unwrap(), 3, 0).unwrap();
        let port = socks[0].local_addr().unwrap().port();
        assert!(socks.iter().all(|s| s.local_addr().unwrap().port() == port));
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = reuseport(taken.local_addr().unwrap(), 1, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_connection_queued_before_the_first_accept_inherits_tcp_nodelay() {
        let socks = reuseport("127.0.0.1:0".parse().unwrap(), 1, 0).unwrap();
        let _client = std::net::TcpStream::connect(socks[0].local_addr().unwrap()).unwrap();
        socks[0].set_nonblocking(false).unwrap();
        let (accepted, _) = socks[0].accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "no setsockopt per connection is needed");
    }

    #[test]
    fn a_deferring_socket_hands_over_a_connection_with_its_first_bytes_and_keeps_a_silent_one() {
        use std::io::{Read, Write};
        let socks = reuseport("127.0.0.1:0".parse().unwrap(), 2, 1).unwrap();
        assert!(socks.iter().all(defers_accept), "every worker's socket defers");
        let plain = reuseport("127.0.0.1:0".parse().unwrap(), 1, 0).unwrap();
        assert!(!defers_accept(&plain[0]));
        // One socket on its own port, so that the kernel cannot queue the
        // connection on the other.
        // Deferred by 3 s (not 1): room for a busy machine between the
        // connect and the first accept.
        let one = reuseport("127.0.0.1:0".parse().unwrap(), 1, 3).unwrap().remove(0);
        let mut client = std::net::TcpStream::connect(one.local_addr().unwrap()).unwrap();
        // Connected on the client's side, not yet acceptable: the kernel holds
        // it until bytes arrive (or for the deferral).
        let early = one.accept().map(|_| ()).unwrap_err();
        assert_eq!(
            early.kind(),
            io::ErrorKind::WouldBlock,
            "a silent connection is not handed over"
        );
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        one.set_nonblocking(false).unwrap();
        let (mut accepted, _) = one.accept().unwrap();
        // Its request is there at once: a non-blocking read finds it.
        accepted.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let n = accepted
            .read(&mut buf)
            .expect("the first bytes arrived with the connection");
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    }
}
