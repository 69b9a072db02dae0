//! Binding the public listener once per worker.
//!
//! Each worker thread accepts on its own socket: the sockets share one
//! address through `SO_REUSEPORT`, and the kernel spreads new connections
//! over their accept queues, so no accept wakes a thread that does not get
//! the connection (a single socket shared by several epoll instances wakes
//! them all). The first socket is bound like any other; if the port is taken
//! by a process that did not set `SO_REUSEPORT`, binding fails as usual.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections each socket may queue (the kernel caps it at somaxconn).
const BACKLOG: i32 = 4096;

/// `n` non-blocking listening sockets on `addr` (all on the port the first one
/// got when `addr` has port 0).
pub fn reuseport(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpListener>> {
    let first = socket(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(socket(bound)?);
    }
    Ok(all)
}

fn socket(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_sockets_share_one_port_and_a_plainly_bound_port_is_refused() {
        let socks = reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = socks[0].local_addr().unwrap().port();
        assert!(socks.iter().all(|s| s.local_addr().unwrap().port() == port));
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = reuseport(taken.local_addr().unwrap(), 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }
}
