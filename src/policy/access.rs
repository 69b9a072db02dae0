//! `wharf.allow` / `wharf.deny`, and which address "the client" is.
//!
//! The client is the peer, unless the peer is a trusted proxy
//! (`--trusted-proxies`): then it is the last address in `X-Forwarded-For`
//! that no trusted proxy added — walking the chain from the right and
//! skipping trusted hops, the nginx `real_ip_recursive` rule. Addresses a
//! client wrote itself (left of the first untrusted hop) never count, so a
//! client cannot pick its own address.

use std::net::IpAddr;

use http::HeaderMap;

use crate::model::cidr::{any_contains, Cidr};

/// The client's address as wharf sees it (see the module docs).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    if !any_contains(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    // Header lines in order, each a comma list; walked from the last hop back.
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !any_contains(trusted, ip) {
                    break;
                }
            }
            // Garbage in the chain: stop at the last address we could read.
            Err(_) => break,
        }
    }
    client
}

/// Allowed by the pool's lists? `deny` wins; an empty `allow` allows all.
pub fn allowed(ip: IpAddr, allow: &[Cidr], deny: &[Cidr]) -> bool {
    !any_contains(deny, ip) && (allow.is_empty() || any_contains(allow, ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(s: &str) -> Vec<Cidr> {
        s.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = xff(&["10.9.9.9"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &nets("10.0.0.0/8")),
            ip("127.0.0.1")
        );
        assert_eq!(client_address(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
    }

    #[test]
    fn through_trusted_proxies_the_last_untrusted_hop_is_the_client() {
        let trusted = nets("127.0.0.1,10.0.0.0/8");
        // The client wrote 6.6.6.6 itself; 203.0.113.7 reached the first trusted proxy.
        let h = xff(&["6.6.6.6, 203.0.113.7", "10.1.1.1"]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.7"));
        // Only trusted hops: the first of them.
        let h = xff(&["10.2.2.2, 10.1.1.1"]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), ip("10.2.2.2"));
        // No header: the peer.
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // Garbage stops the walk at the last readable hop.
        let h = xff(&["nonsense, 10.3.3.3"]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), ip("10.3.3.3"));
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_everyone() {
        let (allow, deny) = (nets("10.0.0.0/8"), nets("10.6.0.0/16"));
        assert!(allowed(ip("10.1.2.3"), &allow, &deny));
        assert!(!allowed(ip("10.6.2.3"), &allow, &deny));
        assert!(!allowed(ip("192.168.1.1"), &allow, &deny));
        assert!(allowed(ip("192.168.1.1"), &[], &deny));
        assert!(!allowed(ip("10.6.0.1"), &[], &deny));
        assert!(allowed(ip("::1"), &[], &[]));
    }
}
