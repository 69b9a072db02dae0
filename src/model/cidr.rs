//! IP networks: for `--trusted-proxies` (which peers may hand wharf their own
//! `X-Forwarded-*` headers) and for the `wharf.allow` / `wharf.deny` policies.
//!
//! wharf is usually the edge, so by default it trusts no client's forwarding
//! headers and writes its own. Behind another proxy (a cloud load balancer,
//! a CDN, an outer Traefik) the backends want the real client, which only
//! that proxy knows: the same rule as Traefik's `forwardedHeaders.trustedIPs`
//! and nginx's `set_real_ip_from`. A few lines of our own instead of a crate:
//! parsing and a masked compare are all that is needed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network, `10.0.0.0/8` or `2001:db8::/32`; a bare address
/// is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8)")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Is `ip` inside this network? An IPv4 peer seen on a dual-stack socket
    /// (`::ffff:10.0.0.1`) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => masked(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

/// Do `a` and `b` agree on their first `prefix` bits out of `width`?
fn masked(a: u128, b: u128, prefix: u8, width: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(width - prefix);
    (a >> shift) == (b >> shift)
}

/// Is `ip` in any of `nets`?
pub fn any_contains(nets: &[Cidr], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_single_addresses_parse_and_match() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.255.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.168.1.7/32");
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_matches_its_ipv4_network() {
        let n: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused_with_the_input_and_an_example() {
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "ten", "10.0.0.0/x"] {
            let e = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("e.g."), "{bad}: {e}");
        }
    }
}
