//! Randomness and hashing for the balancers: small, fast, seedable, stable.
//!
//! - [`Rng`] is SplitMix64 (Steele, Lea & Flood, "Fast Splittable
//!   Pseudorandom Number Generators", OOPSLA 2014) with its state in one
//!   atomic: every draw is a single `fetch_add` plus a bit mixer, with no lock
//!   and no thread-local. A balancer gets one seeded from the OS when it is
//!   built; tests seed it with a constant, so sequences are reproducible.
//! - [`mix64`] is SplitMix64's output function (a variant of MurmurHash3's
//!   `fmix64` finaliser): a bijection on `u64` whose output bits each depend on
//!   every input bit. [`hash_bytes`] folds bytes into it. Both are fixed
//!   functions of their input, unlike `std`'s `RandomState`, so a client
//!   address hashes the same in every wharf process, across restarts and
//!   replicas (what `ip_hash` and sticky cookies need). They are not
//!   cryptographic: nothing here defends against chosen inputs.

use std::sync::atomic::{AtomicU64, Ordering};

/// SplitMix64's increment (the odd integer closest to 2^64 / φ).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 finaliser.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of `bytes`: 8-byte little-endian words, each mixed in
/// with [`mix64`], the length folded in last so `"a"` and `"a\0"` differ.
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = mix64(seed ^ GAMMA);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix64(h ^ u64::from_le_bytes(w)).wrapping_add(GAMMA);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = mix64(h ^ u64::from_le_bytes(last)).wrapping_add(GAMMA);
    mix64(h ^ bytes.len() as u64)
}

/// SplitMix64 behind an atomic: shareable by every request of a pool.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    /// Seeded from the operating system's generator.
    pub fn from_os() -> Rng {
        Rng::new(rand::random())
    }

    pub fn next_u64(&self) -> u64 {
        mix64(self.0.fetch_add(GAMMA, Ordering::Relaxed).wrapping_add(GAMMA))
    }

    /// Uniform in `0..n` (`0` when `n == 0`), by Lemire's multiply-shift: the
    /// bias is at most `n / 2^64`, far below anything a test could measure.
    pub fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `(0, 1)`, never exactly 0 or 1.
    pub fn unit(&self) -> f64 {
        unit(self.next_u64())
    }
}

/// Maps 64 random bits to a float uniform in the open interval `(0, 1)`: the
/// top 52 bits, centred in their interval (with 53 the largest value would
/// round up to 1.0).
pub fn unit(bits: u64) -> f64 {
    ((bits >> 12) as f64 + 0.5) / (1u64 << 52) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (a, b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], Rng::new(8).next_u64());
    }

    #[test]
    fn splitmix64_matches_the_reference_output() {
        // First outputs of the reference implementation for seed 0.
        let r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn below_stays_in_range_and_covers_it_evenly() {
        let r = Rng::new(1);
        let mut n = [0u32; 10];
        for _ in 0..100_000 {
            n[r.below(10) as usize] += 1;
        }
        assert!(n.iter().all(|&c| (9_500..=10_500).contains(&c)), "{n:?}");
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn unit_is_strictly_inside_zero_and_one() {
        assert!(unit(0) > 0.0 && unit(u64::MAX) < 1.0);
    }

    #[test]
    fn hash_bytes_is_stable_and_sensitive_to_every_byte_and_the_length() {
        let h = hash_bytes(0, b"container-1/172.18.0.2:80");
        assert_eq!(h, hash_bytes(0, b"container-1/172.18.0.2:80"));
        assert_ne!(h, hash_bytes(0, b"container-1/172.18.0.3:80"));
        assert_ne!(h, hash_bytes(1, b"container-1/172.18.0.2:80"));
        assert_ne!(hash_bytes(0, b"a"), hash_bytes(0, b"a\0"));
        assert_ne!(hash_bytes(0, b""), hash_bytes(0, b"\0"));
    }
}
