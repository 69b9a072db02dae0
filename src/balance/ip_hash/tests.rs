//! The guarantees of the module docs, measured over 100 000 client addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::balance::testing::{ctx_from, pool};

const CLIENTS: u32 = 100_000;

fn client(n: u32) -> IpAddr {
    // 10.0.0.0/8 and beyond: consecutive addresses, the worst case for a weak hash.
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// The container id each client lands on.
fn assign(backends: &[Backend], eligible: &dyn Fn(usize) -> bool) -> Vec<String> {
    let lb = IpHash::new(backends, Ramp::default());
    (0..CLIENTS)
        .map(|n| match lb.select(backends, &ctx_from(client(n)), eligible) {
            Some(i) => backends[i].key.id.clone(),
            None => "-".to_string(),
        })
        .collect()
}

fn share(of: &[String], id: &str) -> f64 {
    of.iter().filter(|s| *s == id).count() as f64 / of.len() as f64
}

/// (moved fraction, every mover went to `to`)
fn moved(before: &[String], after: &[String], to: Option<&str>) -> (f64, bool) {
    let movers: Vec<_> = before.iter().zip(after).filter(|(b, a)| b != a).collect();
    let all_to = movers.iter().all(|(_, a)| to.is_none_or(|t| a.as_str() == t));
    (movers.len() as f64 / before.len() as f64, all_to)
}

#[test]
fn equal_weights_split_clients_evenly() {
    let a = assign(&pool(&[1, 1, 1, 1]), &|_| true);
    for id in ["c0", "c1", "c2", "c3"] {
        let s = share(&a, id);
        assert!((s - 0.25).abs() < 0.01, "{id}: {s}");
    }
}

#[test]
fn weights_3_1_split_clients_75_25() {
    let s = share(&assign(&pool(&[3, 1]), &|_| true), "c0");
    assert!((s - 0.75).abs() < 0.01, "{s}");
}

#[test]
fn a_fourth_backend_joining_three_takes_a_quarter_of_the_clients_and_nobody_else_moves() {
    let before = assign(&pool(&[1, 1, 1]), &|_| true);
    let after = assign(&pool(&[1, 1, 1, 1]), &|_| true);
    let (f, all_to_new) = moved(&before, &after, Some("c3"));
    eprintln!(
        "ip_hash 3 -> 4 backends: {:.2}% of {CLIENTS} clients moved (ideal 25%)",
        f * 100.0
    );
    assert!(all_to_new, "a client moved between two backends that stayed");
    assert!((f - 0.25).abs() <= 0.02, "moved {f}");
}

#[test]
fn an_eleventh_backend_joining_ten_takes_about_one_in_eleven() {
    let before = assign(&pool(&[1; 10]), &|_| true);
    let after = assign(&pool(&[1; 11]), &|_| true);
    let (f, all_to_new) = moved(&before, &after, Some("c10"));
    eprintln!(
        "ip_hash 10 -> 11 backends: {:.2}% moved (ideal {:.2}%)",
        f * 100.0,
        100.0 / 11.0
    );
    assert!(all_to_new);
    assert!((f - 1.0 / 11.0).abs() <= 0.02, "moved {f}");
}

#[test]
fn a_weighted_backend_joining_takes_its_weight_share() {
    let before = assign(&pool(&[2, 1, 1]), &|_| true);
    let after = assign(&pool(&[2, 1, 1, 1]), &|_| true);
    let (f, all_to_new) = moved(&before, &after, Some("c3"));
    assert!(all_to_new);
    assert!((f - 0.2).abs() <= 0.02, "moved {f}");
}

#[test]
fn a_backend_leaving_moves_only_its_own_clients() {
    let four = pool(&[1, 1, 1, 1]);
    let before = assign(&four, &|_| true);
    let three: Vec<Backend> = four.iter().filter(|b| b.key.id != "c1").cloned().collect();
    let after = assign(&three, &|_| true);
    let (f, _) = moved(&before, &after, None);
    eprintln!("ip_hash 4 -> 3 backends: {:.2}% moved (ideal 25%)", f * 100.0);
    for (b, a) in before.iter().zip(&after) {
        assert!(b == a || b == "c1", "a client of {b} moved to {a}");
        assert_ne!(a, "c1");
    }
    assert!((f - share(&before, "c1")).abs() < 1e-12);
}

#[test]
fn a_draining_backend_moves_only_its_own_clients_and_they_come_back() {
    let four = pool(&[1, 1, 1, 1]);
    let before = assign(&four, &|_| true);
    let drained = assign(&four, &|i| i != 2);
    for (b, a) in before.iter().zip(&drained) {
        assert!(b == a || b == "c2", "a client of {b} moved to {a}");
    }
    assert_eq!(assign(&four, &|_| true), before);
}

#[test]
fn the_mapping_does_not_depend_on_pool_order() {
    let forward = pool(&[1, 2, 1]);
    let backward: Vec<Backend> = forward.iter().rev().cloned().collect();
    assert_eq!(assign(&forward, &|_| true), assign(&backward, &|_| true));
}

#[test]
fn an_ipv4_mapped_address_hashes_like_the_ipv4_address() {
    let v4 = Ipv4Addr::new(192, 0, 2, 7);
    assert_eq!(
        client_hash(IpAddr::V4(v4)),
        client_hash(IpAddr::V6(v4.to_ipv6_mapped()))
    );
    assert_ne!(
        client_hash(IpAddr::V4(v4)),
        client_hash(IpAddr::V6(Ipv6Addr::LOCALHOST))
    );
}

#[test]
fn an_empty_or_fully_ineligible_pool_gives_none() {
    let none: &[Backend] = &[];
    let lb = IpHash::new(none, Ramp::default());
    assert_eq!(lb.select(none, &ctx_from(client(1)), &|_| true), None);
    let two = pool(&[1, 1]);
    let lb = IpHash::new(&two, Ramp::default());
    assert_eq!(lb.select(&two, &ctx_from(client(1)), &|_| false), None);
}

#[test]
fn the_uniform_shortcut_agrees_with_the_weighted_formula() {
    let ids: Vec<u64> = (0..7).map(mix64).collect();
    let w = [1000u64; 7];
    for n in 0..10_000 {
        let c = client_hash(client(n));
        assert_eq!(pick(c, &ids, &w, true, &|_| true), pick(c, &ids, &w, false, &|_| true));
    }
}
