//! `TCP_DEFER_ACCEPT` on a listening socket, behind a safe function.
//!
//! socket2 (wharf's socket crate) has no setter for it and std's is not
//! stable, so this crate makes the one `setsockopt` call with libc. A crate
//! of its own for the same reason as `wharf-alloc`: wharf itself stays
//! `#![forbid(unsafe_code)]`, and the unsafe code is small and in one place.
//!
//! What the option does (Linux, `tcp(7)`): the kernel completes a new
//! connection's handshake but hands it to `accept` only once the client's
//! first bytes have arrived, or once the given number of seconds has passed
//! (the kernel rounds it up to a count of SYN-ACK retransmissions, the first
//! at 1 s, then 3, 7, 15, 31, 63 s after the handshake), after which the
//! connection is accepted without data when the client answers the SYN-ACK
//! sent again. nginx's `listen … deferred` sets 1 s; HAProxy calls it
//! `defer-accept`. When SYN cookies are in use (a full SYN queue) the kernel
//! accepts at once, as without the option.
//!
//! Other systems have no such option: there the setter does nothing and the
//! getter reads 0.
#![deny(unsafe_op_in_unsafe_fn)]

use std::io;
use std::os::fd::AsFd;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

/// Set `TCP_DEFER_ACCEPT` on `socket` to `secs` seconds (0 turns it off).
#[cfg(target_os = "linux")]
pub fn set_tcp_defer_accept(socket: &impl AsFd, secs: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(secs).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: `fd` is borrowed from a live descriptor for the duration of the
    // call, and the kernel reads exactly `size_of::<c_int>()` bytes from a
    // pointer to a `c_int` on this stack frame.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `TCP_DEFER_ACCEPT` of `socket`, as the kernel reports it: the seconds
/// that its count of SYN-ACK retransmissions covers (so 1 reads back as 1,
/// 2 as 3), 0 when off.
#[cfg(target_os = "linux")]
pub fn tcp_defer_accept(socket: &impl AsFd) -> io::Result<u32> {
    let fd = socket.as_fd().as_raw_fd();
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above; the kernel writes at most `len` bytes to `value` and
    // stores the length it wrote in `len`, both on this stack frame.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(u32::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere: nothing to set (see the module docs).
#[cfg(not(target_os = "linux"))]
pub fn set_tcp_defer_accept(_socket: &impl AsFd, _secs: u32) -> io::Result<()> {
    Ok(())
}

/// Elsewhere: never deferred.
#[cfg(not(target_os = "linux"))]
pub fn tcp_defer_accept(_socket: &impl AsFd) -> io::Result<u32> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_listener_reads_back_the_deferral_it_was_given_and_zero_turns_it_off() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_defer_accept(&l).unwrap(), 0, "off unless set");
        set_tcp_defer_accept(&l, 1).unwrap();
        assert_eq!(tcp_defer_accept(&l).unwrap(), 1);
        set_tcp_defer_accept(&l, 0).unwrap();
        assert_eq!(tcp_defer_accept(&l).unwrap(), 0);
    }

    #[test]
    fn a_value_beyond_a_c_int_is_refused_not_wrapped_into_a_negative_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = set_tcp_defer_accept(&l, u32::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_descriptor_that_is_not_a_tcp_socket_is_refused_by_the_kernel() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(set_tcp_defer_accept(&f, 1).is_err());
    }
}
