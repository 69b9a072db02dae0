//! `ip_hash`: the client's address picks the backend, by weighted rendezvous
//! hashing (highest random weight; Thaler & Ravishankar, "Using Name-Based
//! Mappings to Increase Hit Rates", IEEE/ACM ToN 1998), with the logarithmic
//! weighting of Schindelhauer & Schomaker ("Weighted Distributed Hash Tables",
//! SPAA 2005), also used by Ceph's `straw2`.
//!
//! Every (client, backend) pair gets a pseudo-random `u ∈ (0,1)` from a fixed
//! hash of both; the client goes to the eligible backend with the highest
//! score `weight / -ln(u)`. A backend wins with probability `weight / Σ weight`,
//! and because each pair's score depends on that pair alone:
//!
//! - when a backend leaves (removed, draining, unhealthy, ejected), only its own
//!   clients move, each to its second-best backend;
//! - when one joins, the only clients that move are those it now outscores, so
//!   about `weight / Σ weight` of them (1/N in a pool of N equal backends), and
//!   they all move *to it*;
//! - no client ever moves between two backends that both stayed.
//!
//! Maglev (Eisenbud et al., NSDI 2016) would make a pick O(1) instead of O(n),
//! but its lookup table reshuffles a few clients between backends that stayed
//! on every change, and rebuilding it on a drain or an ejection is too slow
//! for the request path. Rendezvous hashing keeps the guarantees above exact,
//! needs no table, and costs about 10 ns per backend (one hash per backend;
//! a logarithm per backend only when weights differ).
//!
//! When to pick it: cheap affinity without cookies (a backend's local cache
//! keeps serving the same clients). Clients behind one NAT share an address
//! and therefore a backend: prefer `wharf.sticky=cookie` for them.
//!
//! The hashes are fixed functions ([`super::mix`]) of the client address and
//! of the backend's identity (container id + address), so every wharf replica
//! and every restart maps a client to the same backend.

use std::net::IpAddr;

use super::mix::{hash_bytes, mix64, unit};
use super::slow_start::{Ramp, Weights};
use super::{Balancer, Context};
use crate::backend::Backend;
use crate::model::BackendKey;

/// Seed of the backend and client hashes (any constant will do; changing it
/// remaps every client).
const SEED: u64 = 0x7768_6172_665f_6970; // "wharf_ip"

#[derive(Debug)]
pub struct IpHash {
    /// The hash of each backend's identity, in pool order.
    ids: Vec<u64>,
    /// All backends have the same weight: once no backend is ramping up,
    /// comparing raw hashes gives the same answer without logarithms.
    equal: bool,
    weights: Weights,
}

impl IpHash {
    pub fn new(backends: &[Backend], ramp: Ramp) -> IpHash {
        let ids = backends.iter().map(|b| backend_hash(&b.key)).collect();
        let equal = backends.windows(2).all(|w| w[0].weight == w[1].weight);
        let weights = Weights::new(backends, ramp);
        IpHash { ids, equal, weights }
    }
}

/// A backend's place on the hash: its container id and address.
pub fn backend_hash(key: &BackendKey) -> u64 {
    hash_bytes(SEED, format!("{}/{}", key.id, key.addr).as_bytes())
}

/// The hash of a client address. An IPv4-mapped IPv6 address (a v4 client on
/// a dual-stack socket) hashes like the IPv4 address it carries.
pub fn client_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(SEED, &v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(SEED, &v4.octets()),
            None => hash_bytes(SEED, &v6.octets()),
        },
    }
}

/// The eligible backend of positive weight with the highest rendezvous score
/// for `client`. `uniform` promises that all weights are equal.
pub fn pick(
    client: u64,
    ids: &[u64],
    weights: &[u64],
    uniform: bool,
    eligible: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    if uniform {
        let scored = ids.iter().enumerate().filter(|&(i, _)| weights[i] > 0 && eligible(i));
        return scored.map(|(i, &id)| (mix64(client ^ id), i)).max().map(|(_, i)| i);
    }
    let mut best: Option<(f64, usize)> = None;
    for (i, &id) in ids.iter().enumerate() {
        if weights[i] == 0 || !eligible(i) {
            continue;
        }
        // -ln(u) > 0 because u < 1; a larger u (or weight) scores higher.
        let score = weights[i] as f64 / -unit(mix64(client ^ id)).ln();
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

impl Balancer for IpHash {
    fn select(&self, backends: &[Backend], ctx: &Context<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.ids.len() != backends.len() {
            return None;
        }
        let client = client_hash(ctx.client_ip);
        let uniform = self.equal && self.weights.is_settled();
        self.weights
            .with(backends, ctx.now, |w| pick(client, &self.ids, w, uniform, eligible))
    }
}

#[cfg(test)]
mod tests;
